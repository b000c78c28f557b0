/**
 * P11's child: one fresh process loads the backbone folder argv[2] the way a runtime does and
 * prints its memory as JSON. argv[3]: 'serve' (deferred, onnxruntime attached, settled native —
 * a serving runtime), 'train' (deferred, onnxruntime attached, settled in tfjs too — a training
 * runtime) or 'tfjs' (BACKBONE_ENGINE=tfjs). RSS figures in bytes: `base` before the load (Node,
 * tfjs, its wasm module, onnxruntime's binding loaded), `peak` the process's maximum RSS,
 * `steady` from /proc/self/smaps_rollup after the load settled and two GCs.
 */
import { readFileSync } from 'node:fs';
import { initBackend, loadBackboneFromDir, settleBackboneWeights, startBackboneEngine } from '../../src/model/index.js';

const [dir, mode] = process.argv.slice(2);
const smapsRss = () => Number(/^Rss:\s+(\d+) kB/m.exec(readFileSync('/proc/self/smaps_rollup', 'utf8'))![1]) * 1024;
const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

await initBackend('wasm');
await import('onnxruntime-node');
gc();
await sleep(200);
const base = smapsRss();
const backbone = await loadBackboneFromDir(dir, { deferResidency: true });
const engine = mode === 'tfjs' ? 'tfjs' : await startBackboneEngine(backbone, 'onnxruntime', { threads: 1, provider: 'cpu' });
settleBackboneWeights(backbone, engine === 'onnxruntime' && mode === 'serve' ? 'native' : 'tfjs');
gc();
await sleep(1500);
gc();
await sleep(500);
process.stdout.write(JSON.stringify({ base, peak: process.resourceUsage().maxRSS * 1024, steady: smapsRss(), weights: backbone.byteSize, engine }));
