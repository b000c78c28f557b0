/**
 * P12 — serving throughput with 2 executor threads ÷ with 1 (SERVE_WORKERS 2 vs 1), and what each
 * executor costs in resident memory.
 *
 * Engines are built the way the server builds them (src/server.ts createEngine: executor threads
 * started from the environment, onnxruntime threads split between executors unless ENGINE_THREADS
 * is set, continuous batching) over a synthetic backbone folder and a disk blob store, one at a
 * time in this process (built, warmed up, measured, closed each round); rounds alternate the
 * set-ups' order so drifting machine load hits all alike. The load is a closed loop: `clients` callers, each sending a 4-image request
 * through one of 8 resident adapters (8 tenants) and the next as soon as it is answered, so every
 * executor always has a batch waiting. Throughput is images answered per wall-clock second of a
 * round (CPU time would hide what a second thread buys); the process's CPU cores busy are logged
 * beside it. RSS: what the process grew by from before an engine to after its warm-up.
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

/** Images answered per wall-clock second, and the process's CPU cores busy meanwhile. */
async function load(engine: ServingEngine, refs: AdapterRef[], pics: Float32Array[], clients: number, ms: number): Promise<{ rate: number; cores: number }> {
  const end = performance.now() + ms;
  let answered = 0;
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
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
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { rate: answered / seconds, cores: (cpu.user + cpu.system) / 1e6 / seconds };
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
    // 24 callers × 4 images = 3 full batches (BATCH_MAX_SIZE 32) queued at any time: with 8 callers
    // (one batch's worth) only one batch was ever in flight and a second executor sat idle.
    const clients = Number(process.env.P12_CLIENTS ?? 24);
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'dtl-bench-p12-'));
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
      // one: SERVE_WORKERS 1 as the server sets it (onnxruntime on every core); two: SERVE_WORKERS 2
      // (onnxruntime threads = cores ÷ 2); oneCore: one executor of one onnxruntime thread — what one
      // executor does on one core. One engine lives at a time, as in a server: idle engines beside
      // the measured one cost it a few per cent (their threads and heaps).
      type Setup = 'one' | 'two' | 'oneCore';
      const envOf: Record<Setup, Record<string, string>> = {
        one: { ...env, SERVE_WORKERS: '1' },
        two: { ...env, SERVE_WORKERS: '2' },
        oneCore: { ...env, SERVE_WORKERS: '1', ENGINE_THREADS: '1' },
      };
      const rates: Record<Setup, number[]> = { one: [], two: [], oneCore: [] };
      const busy: Record<Setup, number[]> = { one: [], two: [], oneCore: [] };
      const grew: Partial<Record<Setup, { rss: number; pss: number }>> = {};
      let twoBatches: number[] = [];
      const loadBefore = os.loadavg()[0];
      for (let r = 0; r < rounds; r++) {
        const order: Setup[] = r % 2 === 0 ? ['one', 'two', 'oneCore'] : ['oneCore', 'two', 'one'];
        for (const setup of order) {
          const before = { rss: rssMb(), pss: pssMb() };
          const engine = createEngine(loadConfig(envOf[setup]), backbone, blobs, createMetrics({ defaultMetrics: false }), envOf[setup]);
          engines.push(engine);
          try {
            await engine.ready();
            await engine.preload(refs);
            await load(engine, refs, pics, clients, 1000); // warm-up: sessions, arenas, JIT
            grew[setup] ??= { rss: rssMb() - before.rss, pss: pssMb() - before.pss };
            const { rate, cores } = await load(engine, refs, pics, clients, roundMs);
            rates[setup].push(rate);
            busy[setup].push(cores);
            if (setup === 'two') twoBatches = engine.stats().executors.batchesByExecutor;
          } finally {
            await engine.close();
            engines.pop();
          }
          log(`P12: round ${r + 1}/${rounds}, ${setup}: ${fmt(rates[setup][rates[setup].length - 1])} images/s`);
        }
      }
      const loadAfter = os.loadavg()[0];
      const one = median(rates.one);
      const two = median(rates.two);
      const oneCore = median(rates.oneCore);
      const cores = os.availableParallelism();
      const detail =
        `${describeSize(SIZE)}, engine ${process.env.BACKBONE_ENGINE ?? 'auto'} (onnxruntime threads per executor: cores ÷ executors = ${cores} ÷ n); ${ADAPTERS} resident DTL adapters (authors' blocks, 10 classes), ` +
        `${clients} closed-loop callers of ${PER_REQUEST}-image requests, continuous batching, BATCH_MAX_SIZE 32; ${rounds} alternating rounds of ${roundMs} ms. ` +
        `Images/s: 1 executor ${rates.one.map((x) => fmt(x)).join(', ')} (median ${fmt(one)}); 2 executors ${rates.two.map((x) => fmt(x)).join(', ')} (median ${fmt(two)}); ` +
        `1 executor of 1 onnxruntime thread ${rates.oneCore.map((x) => fmt(x)).join(', ')} (median ${fmt(oneCore)}); ` +
        `CPU cores busy (median): ${fmt(median(busy.one))} / ${fmt(median(busy.two))} / ${fmt(median(busy.oneCore))}; ` +
        `batches per executor with 2: ${twoBatches.join(' / ')}. Machine: ${cores} cores, load average ${fmt(loadBefore)} before, ${fmt(loadAfter)} after. ` +
        `Process RSS (PSS: mapped weight files counted once) grew, from before the engine to after its warm-up: 1 executor +${fmt(grew.one!.rss)} (${fmt(grew.one!.pss)}) MiB, ` +
        `2 executors +${fmt(grew.two!.rss)} (${fmt(grew.two!.pss)}) MiB (each executor thread: its onnxruntime sessions mapping the shared weight files, its tfjs wasm heap and adapters).`;
      // The goal is on executor scaling: one executor on one core against two executors on two. The
      // server-default comparison (one executor already running onnxruntime on both cores) is capped
      // by what a second intra-op thread buys one executor, so it is reported beside it.
      return [
        result('P12 serving throughput, 2 executors ÷ 1 (one onnxruntime thread per executor)', two / oneCore, { op: '>=', value: 1.6 }, detail),
        result('P12 serving throughput, 2 executors ÷ 1 executor with onnxruntime on all cores', two / one, null, detail),
      ];
    } finally {
      for (const e of engines) await e.close();
      await fs.rm(dir, { recursive: true, force: true });
    }
  },
};

export default bench;
