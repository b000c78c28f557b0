/**
 * P12 — serving throughput with 2 executor threads ÷ with 1 (SERVE_WORKERS 2 vs 1), and what each
 * executor costs in resident memory.
 *
 * Both engines are built the way the server builds them (src/server.ts createEngine: executor
 * threads started from the environment, onnxruntime threads split between executors unless
 * ENGINE_THREADS is set, continuous batching) over a synthetic backbone folder and a disk blob
 * store, and live side by side in this process; rounds alternate 1, 2, 2, 1, … so drifting machine
 * load hits both alike. The load is a closed loop: `clients` callers, each sending a 4-image request
 * through one of 8 resident adapters (8 tenants) and the next as soon as it is answered, so every
 * executor always has a batch waiting. Throughput is images answered per wall-clock second of a
 * round (CPU time would hide what a second thread buys). RSS: the process's, before the engines,
 * after the 1-executor engine warmed up, after the 2-executor one.
 */
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { loadConfig } from '../../src/config.js';
import { createMetrics } from '../../src/metrics.js';
import { initBackend } from '../../src/model/index.js';
import type { AdapterRef, ServingEngine } from '../../src/serve/index.js';
import { createEngine } from '../../src/server.js';
import { DiskBlobStore } from '../../src/storage/index.js';
import { writeTinyBackboneDir } from '../../test/helpers/tiny-backbone.js';
import { adapterFile, authorsSpec, describeSize, images, syntheticBackbone, type BackboneSize } from '../lib/synthetic.js';
import type { Bench } from '../lib/types.js';
import { fmt, median, result } from '../lib/util.js';

const SIZE: BackboneSize = { width: 192, depth: 12, heads: 3, imageSize: 32, patchSize: 4 };
const ADAPTERS = 8;
const PER_REQUEST = 4;

async function load(engine: ServingEngine, refs: AdapterRef[], pics: Float32Array[], clients: number, ms: number): Promise<number> {
  const end = performance.now() + ms;
  let answered = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      for (let n = 0; performance.now() < end; n++) {
        const a = (c + n) % refs.length;
        const imgs = Array.from({ length: PER_REQUEST }, (_, k) => ({ pixels: pics[(c * 7 + n * PER_REQUEST + k) % pics.length] }));
        const results = await engine.classify({ tenantId: `t${a}`, adapter: refs[a], images: imgs });
        answered += results.length;
      }
    }),
  );
  return answered / ((performance.now() - t0) / 1000);
}

const rssMb = () => process.memoryUsage().rss / 2 ** 20;
/** Proportional set size: a page mapped twice (two executors mapping one weight file) counts once. */
const pssMb = () => Number(/^Pss:\s+(\d+) kB/m.exec(readFileSync('/proc/self/smaps_rollup', 'utf8'))?.[1] ?? NaN) / 1024;

const bench: Bench = {
  id: 'P12',
  title: 'serving throughput with 2 executor threads ÷ 1',
  async run({ quick, log }) {
    const rounds = quick ? 3 : 6;
    const roundMs = quick ? 2500 : 6000;
    const clients = 8;
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'dtl-bench-p10-'));
    const engines: ServingEngine[] = [];
    try {
      await initBackend('wasm');
      const backboneDir = path.join(dir, 'backbone');
      await writeTinyBackboneDir(backboneDir, { ...SIZE, mlpDim: 4 * SIZE.width, seed: 1 });
      const backbone = syntheticBackbone(SIZE);
      const env = { BACKBONE: backboneDir, DATA_DIR: path.join(dir, 'data'), TFJS_BACKEND: 'wasm', LOG_LEVEL: 'silent' };
      const blobs = await DiskBlobStore.open({ root: path.join(dir, 'data', 'blobs'), fsync: false });
      const refs: AdapterRef[] = [];
      for (let i = 0; i < ADAPTERS; i++) {
        const objectKey = `adapters/${i}.safetensors`;
        await blobs.putBuffer(objectKey, adapterFile(backbone.config, authorsSpec(SIZE.depth, 10), 100 + i));
        refs.push({ key: `v-${i}`, objectKey, backboneId: backbone.identity });
      }
      const pics = images(64, backbone.config, 5);
      const rss: number[] = [rssMb()];
      const pss: number[] = [pssMb()];
      // 1 and 2: SERVE_WORKERS as the server sets it (onnxruntime threads = cores ÷ executors);
      // 3: one executor of one onnxruntime thread — what one executor does on one core.
      const byWorkers = new Map<1 | 2 | 3, ServingEngine>();
      for (const workers of [1, 2, 3] as const) {
        const workerEnv = { ...env, SERVE_WORKERS: String(workers === 3 ? 1 : workers), ...(workers === 3 ? { ENGINE_THREADS: '1' } : {}) };
        const engine = createEngine(loadConfig(workerEnv), backbone, blobs, createMetrics({ defaultMetrics: false }), workerEnv);
        engines.push(engine);
        await engine.ready();
        await engine.preload(refs);
        log(`P12: ${workers} executor(s): warm-up`);
        await load(engine, refs, pics, clients, 1000);
        byWorkers.set(workers, engine);
        rss.push(rssMb());
        pss.push(pssMb());
      }
      const rates: Record<1 | 2 | 3, number[]> = { 1: [], 2: [], 3: [] };
      const loadBefore = os.loadavg()[0];
      for (let r = 0; r < rounds; r++) {
        const order: Array<1 | 2 | 3> = r % 2 === 0 ? [1, 2, 3] : [3, 2, 1];
        for (const w of order) {
          rates[w].push(await load(byWorkers.get(w)!, refs, pics, clients, roundMs));
          log(`P12: round ${r + 1}/${rounds}, ${w} executor(s): ${fmt(rates[w][rates[w].length - 1])} images/s`);
        }
      }
      const loadAfter = os.loadavg()[0];
      const stats2 = byWorkers.get(2)!.stats();
      const one = median(rates[1]);
      const two = median(rates[2]);
      const oneCore = median(rates[3]);
      const cores = os.availableParallelism();
      const detail =
        `${describeSize(SIZE)}, engine ${process.env.BACKBONE_ENGINE ?? 'auto'} (onnxruntime threads per executor: cores ÷ executors = ${cores} ÷ n); ${ADAPTERS} resident DTL adapters (authors' blocks, 10 classes), ` +
        `${clients} closed-loop callers of ${PER_REQUEST}-image requests, continuous batching, BATCH_MAX_SIZE 32; ${rounds} alternating rounds of ${roundMs} ms. ` +
        `Images/s: 1 executor ${rates[1].map((x) => fmt(x)).join(', ')} (median ${fmt(one)}); 2 executors ${rates[2].map((x) => fmt(x)).join(', ')} (median ${fmt(two)}); ` +
        `1 executor of 1 onnxruntime thread ${rates[3].map((x) => fmt(x)).join(', ')} (median ${fmt(oneCore)}); ` +
        `batches per executor with 2: ${stats2.executors.batchesByExecutor.join(' / ')}. Machine: ${cores} cores, load average ${fmt(loadBefore)} before, ${fmt(loadAfter)} after. ` +
        `Process RSS (PSS: mapped weight files counted once): ${fmt(rss[0])} (${fmt(pss[0])}) MiB before the engines, +${fmt(rss[1] - rss[0])} (${fmt(pss[1] - pss[0])}) MiB with the 1-executor engine, ` +
        `+${fmt(rss[2] - rss[1])} (${fmt(pss[2] - pss[1])}) MiB more with the 2-executor one (each executor thread: its onnxruntime sessions mapping the shared weight files, its tfjs wasm heap and adapters).`;
      return [
        result('P12 serving throughput, 2 executors ÷ 1', two / one, { op: '>=', value: 1.6 }, detail),
        result('P12 serving throughput, 2 executors ÷ 1 executor of 1 onnxruntime thread (per-core scaling)', two / oneCore, null, detail),
      ];
    } finally {
      for (const e of engines) await e.close();
      await fs.rm(dir, { recursive: true, force: true });
    }
  },
};

export default bench;
