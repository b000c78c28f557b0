/**
 * P6 — adapter cold loads from an S3 endpoint, and how many adapters fit in memory, at ViT-B size.
 *
 * Adapters for ViT-B/16 (width 768, depth 12; rank 2, reads before all 12 blocks, additions after
 * blocks 6–11) are written to an S3 server in a child process (s3rver, the same S3 client code as
 * production), then loaded one at a time, cold, through the serving adapter cache and its blob
 * loader (GET + parse + validate + pack). Latency percentiles come from the cache's own load
 * timer; bytes per adapter from its byte accounting (what the budget counts), held against what
 * resident adapters really cost the process (bench/lib/resident-cost.ts: V8 heap + external +
 * tfjs tensors, after a GC). Adapters are held as the serving default, SERVE_PRECISION=compact.
 */
import { initBackend, loadAdapter, loadResidentAdapter, type ResidentAdapter, type ResidentPrecision } from '../../src/model/index.js';
import { AdapterCache } from '../../src/serve/adapter-cache.js';
import { blobAdapterLoader, type AdapterRef } from '../../src/serve/index.js';
import { measureResidentCost } from '../lib/resident-cost.js';
import { startS3InChild } from '../lib/s3-child.js';
import { adapterFile, authorsSpec, VIT_B } from '../lib/synthetic.js';
import type { Bench } from '../lib/types.js';
import { fmt, percentile, result } from '../lib/util.js';

const GiB = 1024 ** 3;

const bench: Bench = {
  id: 'P6',
  title: 'adapter cold-load latency from S3 and adapters resident per GiB (ViT-B size)',
  async run({ quick, log }) {
    const count = quick ? 40 : 300;
    const warmup = 3;
    await initBackend('wasm');
    const s3 = await startS3InChild();
    const identity = 'vit-b-16-config-only';
    const backbone = { config: VIT_B, identity };
    try {
      const write = async (prefix: string, classes: number, n: number): Promise<AdapterRef[]> => {
        const refs: AdapterRef[] = [];
        for (let i = 0; i < n; i++) {
          const objectKey = `tenants/t${i % 50}/adapters/${prefix}-${i}.safetensors`;
          await s3.store.putBuffer(objectKey, adapterFile(VIT_B, authorsSpec(12, classes), i + 1));
          refs.push({ key: `${prefix}-${i}`, objectKey, backboneId: identity });
        }
        return refs;
      };
      log(`P6: writing ${count + warmup} ViT-B adapters (100 classes) to s3rver`);
      const refs100 = await write('c100', 100, count + warmup);
      const refs10 = await write('c10', 10, 20);

      // The real store with its GETs timed, to split load latency into transfer and parse.
      const getMs: number[] = [];
      const timedStore = Object.create(s3.store) as typeof s3.store;
      timedStore.getBuffer = async (key: string) => {
        const t0 = performance.now();
        try {
          return await s3.store.getBuffer(key);
        } finally {
          getMs.push(performance.now() - t0);
        }
      };
      const loader = blobAdapterLoader(timedStore, backbone);
      const measure = async (refs: AdapterRef[], skip: number) => {
        const byKey = new Map(refs.map((r) => [r.key, r]));
        const cache = new AdapterCache<ResidentAdapter>({
          budgetBytes: 4 * GiB,
          load: (key, signal) => loader(byKey.get(key)!, signal),
          dispose: (a) => a.dispose(),
        });
        // Warm-up loads (connection set-up, first-use JIT) are done in a throwaway cache.
        const warm = new AdapterCache<ResidentAdapter>({ budgetBytes: 4 * GiB, load: (key, signal) => loader(byKey.get(key)!, signal), dispose: (a) => a.dispose() });
        for (const r of refs.slice(0, skip)) (await warm.acquire(r.key)).release();
        warm.close();
        // One at a time: each load is cold and alone, as a request for an unseen adapter would be.
        for (const r of refs.slice(skip)) (await cache.acquire(r.key)).release();
        const stats = cache.stats();
        cache.close();
        return stats;
      };
      log('P6: cold loads');
      const s100 = await measure(refs100, warmup);
      const gets = getMs.slice(warmup);
      const s10 = await measure(refs10, 0);
      const per100 = s100.residentBytes / s100.residentCount;
      const per10 = s10.residentBytes / s10.residentCount;
      const csn = 12 * 2 * 768 * 2 * 2; // float16
      const lat = s100.loadLatencyMs;
      const file = (await s3.store.head(refs100[warmup].objectKey))!.size;

      // What holding them really costs, from files in memory: float16 and float32 resident forms,
      // and the tensor adapters the cache held before (loadAdapter: ~26 tfjs tensors each).
      log('P6: measured resident cost');
      const files = await Promise.all(refs100.slice(0, 101).map((r) => s3.store.getBuffer(r.objectKey)));
      const n = files.length - 1;
      const resident = (p: ResidentPrecision) =>
        measureResidentCost(n, (i) => loadResidentAdapter(files[i + 1], VIT_B, p), (a) => a.dispose());
      const realCompact = await resident('compact');
      const real16 = await resident('float16');
      const real32 = await resident('float32');
      const realTensors = await measureResidentCost(n, (i) => loadAdapter(files[i + 1], VIT_B).adapter, (a) => a.dispose());
      const kib = (b: number) => fmt(b / 1024);
      const costLine = (what: string, c: typeof real16) =>
        `${what} ${kib(c.total)} KiB (V8 heap ${kib(c.jsHeap)}, external ${kib(c.external)}, tfjs tensors ${kib(c.tensorBytes)} in ${fmt(c.tensors)}) → ${Math.floor(GiB / c.total)} per GiB`;
      return [
        result('P6 adapter cold-load p50 from S3 (ms)', lat.p50, null,
          `${lat.count} sequential cold loads (after ${warmup} warm-up loads) of ViT-B adapters (rank 2, 12 reads, 6 additions, 100 classes; ` +
            `${fmt(file / 1024)} KiB files) from s3rver (a child process) on localhost through AdapterCache + blobAdapterLoader: GET, parse, validate, pack (SERVE_PRECISION=compact); ` +
            `mean ${fmt(lat.sum / lat.count)} ms, max ${fmt(lat.max)} ms.`),
        result('P6 adapter cold-load p99 from S3 (ms)', lat.p99, { op: '<=', value: 50 },
          `same ${lat.count} loads as p50${lat.count < 100 ? ' (fewer than 100 samples: p99 is the maximum)' : ''}; ` +
            `of which the S3 GET alone: p50 ${fmt(percentile(gets, 0.5))} ms, p99 ${fmt(percentile(gets, 0.99))} ms ` +
            `(s3rver runs in a child process: its own event loop, sharing the machine's 2 cores).`),
        result('P6 adapters resident per GiB at ViT-B size, 100 classes', GiB / per100, { op: '>=', value: 5000 },
          `from the cache's byte accounting of ${s100.residentCount} loaded adapters: ${fmt(per100 / 1024)} KiB each (SERVE_PRECISION=compact): ` +
            `CSN ${fmt(csn / 1024)} KiB float16 (12 × (A 768×2 + B 2×768)) + head and JS objects ${fmt((per100 - csn) / 1024)} KiB ` +
            `(768 × 100 weights as 12-bit integers with a float16 scale per 32, 100 float16 biases). ` +
            `With 10 classes: ${fmt(per10 / 1024)} KiB → ${Math.floor(GiB / per10)} per GiB. ` +
            `Measured per adapter over ${n} held at once (labels shared between them, so the V8 heap is below the accounting's): ` +
            `${costLine('compact', realCompact)}; ${costLine('float16', real16)}; ${costLine('float32', real32)}; ` +
            `${costLine('tfjs tensor adapters (the resident form before)', realTensors)}.`),
        result('P6 adapters resident per GiB at ViT-B size, 10 classes', GiB / per10, { op: '>=', value: 5000 },
          `${s10.residentCount} loaded adapters, ${fmt(per10 / 1024)} KiB each (same CSN, head 768 × 10 + 10).`),
      ];
    } finally {
      await s3.stop();
    }
  },
};

export default bench;
