/**
 * P11's child: one fresh process loads the backbone folder argv[2] the way a runtime does, runs one
 * batch-1 forward (so every weight has been read: a memory-mapped weight file counts once its
 * pages are touched, and a lazy copy once it is made), and prints its memory as JSON. argv[3]:
 * 'serve' (deferred, onnxruntime attached, settled native — a serving runtime), 'train' (deferred,
 * onnxruntime attached, settled in tfjs too — a training runtime) or 'tfjs' (BACKBONE_ENGINE=tfjs).
 * argv[4]: the engine's weight-file folder (ENGINE_WEIGHTS_DIR), or 'off'. RSS figures in bytes:
 * `base` before the load (Node, tfjs, its wasm module, onnxruntime's binding loaded), `peak` the
 * process's maximum RSS (VmHWM), `steady` from /proc/self/smaps_rollup after the forward and two GCs,
 * `file` its file-backed part above the base's (mapped weights: page cache, shared with every
 * other mapping of them).
 * Then, for the native modes, a batch-8 forward: `peak8`/`steady8` (activations on top).
 */
import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import { backboneFeatures, initBackend, loadBackboneFromDir, nativeOf, settleBackboneWeights, startBackboneEngine } from '../../src/model/index.js';

const [dir, mode, weights] = process.argv.slice(2);
const rollup = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/smaps_rollup', 'utf8'))?.[1] ?? NaN) * 1024;
// The high-water mark of this process's own memory. Not resourceUsage().maxRSS: at exec the kernel
// carries the forking parent's peak into it (a child of the bench process read its parent's ≈ 710 MB).
const hwm = () => Number(/^VmHWM:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]) * 1024;
const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const settle = async () => {
  gc();
  await sleep(1500);
  gc();
  await sleep(500);
};

await initBackend('wasm');
await import('onnxruntime-node');
gc();
await sleep(200);
const base = rollup('Rss');
const fileBacked = () => rollup('Rss') - rollup('Anonymous');
const baseFile = fileBacked();
const backbone = await loadBackboneFromDir(dir, { deferResidency: true });
const weightsDir = weights === undefined || weights === 'off' ? undefined : weights;
const engine = mode === 'tfjs' ? 'tfjs' : await startBackboneEngine(backbone, 'onnxruntime', { threads: 1, provider: 'cpu', weightsDir });
settleBackboneWeights(backbone, engine === 'onnxruntime' && mode === 'serve' ? 'native' : 'tfjs');
const { imageSize: s, depth } = backbone.config;
const forward = async (n: number) => {
  const pixels = new Float32Array(n * s * s * 3).fill(0.1);
  if (engine === 'onnxruntime') await nativeOf(backbone)!.prefix(pixels, n, depth, []);
  else tf.tidy(() => backboneFeatures(backbone, tf.tensor4d(pixels, [n, s, s, 3])).dataSync());
};
await forward(1);
await settle();
const steady = rollup('Rss');
const file = fileBacked() - baseFile;
const peak = hwm();
let peak8 = NaN;
let steady8 = NaN;
if (engine === 'onnxruntime') {
  await forward(8);
  await settle();
  steady8 = rollup('Rss');
  peak8 = hwm();
}
process.stdout.write(JSON.stringify({ base, peak, steady, file, peak8, steady8, weights: backbone.byteSize, engine }));
