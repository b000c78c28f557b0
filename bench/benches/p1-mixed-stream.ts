/**
 * P1 — serving many tenants costs about as much as serving one: throughput of a stream whose
 * requests go to 1,000 different adapters ÷ throughput of the same stream through one adapter.
 *
 * Same engine, same image stream (distinct images, prefix cache off), same batch size, same
 * tenant sequence; only the adapter each request names differs. Both streams run back to back,
 * in alternating order, several times; the figure is the median of the per-pair ratios.
 * All adapters are resident (cold loading is P6): this measures the batched multi-adapter suffix.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { initBackend, type Backbone } from '../../src/model/index.js';
import { ServingEngine, blobAdapterLoader, type AdapterRef } from '../../src/serve/index.js';
import { DiskBlobStore } from '../../src/storage/index.js';
import { authorsSpec, describeSize, images as makeImages, syntheticBackbone, type BackboneSize } from '../lib/synthetic.js';
import { createAdapter, saveAdapter } from '../../src/model/index.js';
import type { Bench, BenchResult } from '../lib/types.js';
import { tinySwin } from '../../test/helpers/tiny-swin.js';
import { fmt, median, percentile, result, timed } from '../lib/util.js';
import { rng } from '../../test/helpers/tiny-backbone.js';

/** Full mode: 65 tokens. Quick mode: the same ViT at 16×16 (17 tokens), 4× cheaper per image. */
const FULL: BackboneSize = { width: 192, depth: 12, heads: 3, imageSize: 32, patchSize: 4 };
const QUICK: BackboneSize = { ...FULL, imageSize: 16 };

const bench: Bench = {
  id: 'P1',
  title: 'mixed-stream throughput over 1,000 adapters ÷ single-adapter throughput',
  async run({ quick, log }) {
    await initBackend('wasm');
    const size = quick ? QUICK : FULL;
    const vit = await measure(syntheticBackbone(size), '', describeSize(size), quick, log);
    // The same on a Swin (issue 18): 4 stages of 2 blocks, windows of 4, the authors' block recipe.
    const swinSize = { embedDim: quick ? 24 : 48, depths: [2, 2, 2, 2], heads: [1, 2, 4, 8], windowSize: 4, patchSize: 2, imageSize: quick ? 32 : 64, seed: 1 };
    const swin = await measure(tinySwin(swinSize), ' (Swin)', `Swin, embed ${swinSize.embedDim}, depths 2-2-2-2, window 4, image ${swinSize.imageSize}/patch 2`, quick, log);
    return [vit, swin];
  },
};

async function measure(backbone: Backbone, label: string, sizeNote: string, quick: boolean, log: (msg: string) => void): Promise<BenchResult> {
  const adapters = 1000;
  const tenants = 100;
  const batch = quick ? 16 : 32;
  // One batch per half-pair: the shorter each half, the closer in time (and in machine load) the
  // two halves of a pair run, which is what cancels the noise of a shared machine.
  const streamLen = batch;
  const pairs = quick ? 12 : 20;
  const depth = backbone.config.depth;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'dtl-bench-p1-'));
  const blobs = await DiskBlobStore.open({ root: dir, fsync: false });
  try {
    log(`P1${label}: writing ${adapters} adapter files`);
    const refs: AdapterRef[] = [];
    for (let i = 0; i < adapters; i++) {
      // Weight values do not change serving cost; shapes do (label counts vary 2..20).
      const a = createAdapter(backbone.config, authorsSpec(depth, 2 + (i % 19)), { seed: i + 1 });
      const objectKey = `bench/p1/${i}.safetensors`;
      await blobs.putBuffer(objectKey, saveAdapter(a));
      a.dispose();
      refs.push({ key: `p1-${i}`, objectKey, backboneId: backbone.identity });
    }
    const engine = new ServingEngine({
      backbone,
      loader: blobAdapterLoader(blobs, backbone),
      adapterCacheBytes: 1 << 30,
      prefixCacheBytes: 0,
      maxBatchSize: batch,
      maxWaitMs: 0,
      queueMaxTotal: 1 << 20,
      queueMaxPerTenant: 1 << 20,
      requestDeadlineMs: 3_600_000,
    });
    log(`P1${label}: loading ${adapters} adapters`);
    const failed = (await engine.preload(refs)).filter((r) => r.error);
    if (failed.length > 0) throw failed[0].error;

    const r = rng(99);
    const mixedAdapter = Array.from({ length: streamLen }, () => Math.floor(r.uniform() * adapters));
    const tenantOf = (j: number) => `tenant-${mixedAdapter[j] % tenants}`;
    let imageSeed = 1;
    const runStream = async (mode: 'single' | 'mixed') => {
      // Fresh distinct images every run: no dedupe, no cache effects.
      const imgs = makeImages(streamLen, backbone.config, imageSeed++);
      const before = engine.stats().batcher.batchesRun;
      const t = await timed(() =>
        Promise.all(
          imgs.map((pixels, j) =>
            engine.classify({ tenantId: tenantOf(j), adapter: refs[mode === 'single' ? 0 : mixedAdapter[j]], images: [{ pixels }] }),
          ),
        ),
      );
      const distinct = new Set(t.value.map((x) => x[0].batch.adapters));
      return { ...t, batches: engine.stats().batcher.batchesRun - before, adaptersPerBatch: [...distinct] };
    };

    log(`P1${label}: warm-up`);
    await runStream('mixed');
    const cpuRatios: number[] = [];
    const wallRatios: number[] = [];
    const single: number[] = [];
    const mixed: number[] = [];
    let adaptersPerBatch: number[] = [];
    for (let p = 0; p < pairs; p++) {
      const order: Array<'single' | 'mixed'> = p % 2 === 0 ? ['single', 'mixed'] : ['mixed', 'single'];
      const got: Record<string, Awaited<ReturnType<typeof runStream>>> = {};
      for (const mode of order) got[mode] = await runStream(mode);
      // Throughput ratio = time(single) / time(mixed) for the same number of images.
      cpuRatios.push(got.single.cpuMs / got.mixed.cpuMs);
      wallRatios.push(got.single.wallMs / got.mixed.wallMs);
      single.push(got.single.wallMs);
      mixed.push(got.mixed.wallMs);
      adaptersPerBatch = got.mixed.adaptersPerBatch;
      log(`P1${label}: pair ${p + 1}/${pairs}: cpu ratio ${fmt(cpuRatios.at(-1)!)}, wall ratio ${fmt(wallRatios.at(-1)!)}`);
    }
    const stats = engine.stats();
    await engine.close();
    const spread = (xs: number[]) => `IQR ${fmt(percentile(xs, 0.25))}–${fmt(percentile(xs, 0.75))}, min ${fmt(Math.min(...xs))}, max ${fmt(Math.max(...xs))}`;
    const ips = (ms: number[]) => fmt((streamLen / median(ms)) * 1000);
    return result(
        `P1 mixed 1,000-adapter stream ÷ single-adapter throughput${label}`,
        median(cpuRatios),
        { op: '>=', value: 0.95 },
        `median of ${pairs} interleaved pairs of CPU-time ratios (the engine is single-threaded and CPU-bound, so CPU time is ` +
          `its cost with less of the noise of other processes on a shared machine); CPU pairs ${spread(cpuRatios)}; ` +
          `wall-clock ratio median ${fmt(median(wallRatios))}, pairs ${spread(wallRatios)}. ${sizeNote}; ${adapters} resident DTL adapters ` +
          `(rank 2, reads 0–${depth - 1}, additions ${Math.floor(depth / 2)}–${depth - 1}, 2–20 classes) of ${tenants} tenants; stream of ${streamLen} distinct images, ` +
          `1 per request, batch ${batch} (adapters per mixed batch: ${adaptersPerBatch.join('/')}); ` +
          `throughput single ${ips(single)} img/s, mixed ${ips(mixed)} img/s wall; ` +
          `batches run ${stats.batcher.batchesRun}; tfjs wasm backend, 1 thread.`,
    );
  } finally {
    backbone.dispose();
    await blobs.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
}

export default bench;
