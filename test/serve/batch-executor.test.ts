/**
 * The batch executor owns no state: it reads the caller's requests without writing to them, finds
 * a cold adapter's file through the acquire's load context, and hands the batch's timings back as
 * its return value (the serving engine sums them).
 */
import fs from 'node:fs/promises';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend, type Backbone, type ResidentAdapter } from '../../src/model/index.js';
import { loadConfig } from '../../src/config.js';
import { AdapterCache } from '../../src/serve/adapter-cache.js';
import { blobAdapterLoader, type AdapterRef } from '../../src/serve/adapter-loader.js';
import { executeBatch, type EngineImage, type EngineRequest } from '../../src/serve/batch-executor.js';
import { PrefixActivationCache } from '../../src/serve/prefix-activation-cache.js';
import { ServingEngine } from '../../src/serve/serving-engine.js';
import type { BatchEntry } from '../../src/serve/types.js';
import { DiskBlobStore } from '../../src/storage/index.js';
import { makeTempDir } from '../helpers/db.js';
import { tinyBackbone } from '../helpers/tiny-backbone.js';
import { makeEngine, maxAbsDiff, randomImages, referenceLogits, storeAdapters, TINY, type StoredAdapter } from './engine-helpers.js';

describe('batch executor: no side channels', () => {
  let backbone: Backbone;
  let dir: string;
  let blobs: DiskBlobStore;
  let stored: StoredAdapter[];
  let pixels: Float32Array[];

  beforeAll(async () => {
    await initBackend('wasm');
    backbone = tinyBackbone(TINY);
    dir = await makeTempDir('dtl-executor');
    blobs = await DiskBlobStore.open({ root: dir, fsync: false });
    stored = await storeAdapters(blobs, backbone, 2, { prefix: 'exec' });
    pixels = randomImages(3, backbone, 31);
  });
  afterAll(async () => {
    backbone.dispose();
    await blobs.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  function entry(request: EngineRequest, seq: number): BatchEntry<EngineRequest> {
    return { seq, tenantId: request.tenantId, cost: request.items.length, enqueuedAt: 0, startedAt: 0, deadline: Date.now() + 60_000, request };
  }

  it("returns the batch's timings with its outcomes and leaves the caller's requests and images as they were", async () => {
    const cache = new AdapterCache<ResidentAdapter, AdapterRef>({
      budgetBytes: 1 << 24,
      load: (key, signal, ref) => blobAdapterLoader(blobs, backbone)(ref!, signal),
      dispose: (a) => a.dispose(),
    });
    // Prefix cache on, images without a hash: the executor has to hash them, and must keep the hashes to itself.
    const prefixCache = new PrefixActivationCache({ budgetBytes: 1 << 20, backboneId: backbone.identity });
    const images: EngineImage[] = pixels.map((p) => Object.freeze({ pixels: p }));
    const requests: EngineRequest[] = [
      Object.freeze({ tenantId: 'a', deadline: 0, refs: Object.freeze([stored[0].ref]), items: Object.freeze([0, 1].map((i) => Object.freeze({ payload: images[i], adapterKeys: [stored[0].ref.key] }))) }),
      Object.freeze({
        tenantId: 'b',
        deadline: 0,
        refs: Object.freeze([stored[0].ref, stored[1].ref]),
        // Image 1 again (same object) and image 2 to both adapters: 3 distinct images, 5 suffix rows.
        items: Object.freeze([
          Object.freeze({ payload: images[1], adapterKeys: [stored[1].ref.key] }),
          Object.freeze({ payload: images[2], adapterKeys: [stored[0].ref.key, stored[1].ref.key] }),
        ]),
      }),
    ];
    const snapshot = JSON.stringify(requests.map((r) => ({ ...r, items: r.items.map((it) => ({ keys: Object.keys(it.payload), adapterKeys: it.adapterKeys })) })));
    const deps = { backbone, cache, prefixCache, now: () => Date.now() };
    const tensorsBefore = tf.memory().numTensors;

    const run = await executeBatch(deps, requests.map(entry));
    // Resident adapters hold no tensors; the batch's float32 ones were freed with it.
    expect(cache.stats().residentCount).toBe(2);
    expect(tf.memory().numTensors).toBe(tensorsBefore);
    expect(run.outcomes.map((o) => (o.ok ? 'ok' : o.error.message))).toEqual(['ok', 'ok']);
    expect(run.timings).toMatchObject({ images: 3, rows: 5 });
    for (const k of ['loadMs', 'prefixMs', 'adapterMs'] as const) expect(run.timings![k]).toBeGreaterThanOrEqual(0);
    for (const img of images) expect(Object.keys(img)).toEqual(['pixels']);
    expect(JSON.stringify(requests.map((r) => ({ ...r, items: r.items.map((it) => ({ keys: Object.keys(it.payload), adapterKeys: it.adapterKeys })) })))).toBe(snapshot);
    const first = run.outcomes[0].ok ? run.outcomes[0].value : [];
    expect(maxAbsDiff(first[1].answers[0].logits, referenceLogits(backbone, stored[0].bytes, pixels[1]).logits)).toBeLessThan(1e-5);

    // Again: the same figures come back (the prefix now from the cache), nothing accumulates in the executor.
    const again = await executeBatch(deps, requests.map(entry));
    expect(again.timings).toMatchObject({ images: 3, rows: 5 });
    expect(prefixCache.stats().hits).toBe(3);
    for (const img of images) expect(Object.keys(img)).toEqual(['pixels']);
    for (let i = 0; i < 3; i++) await executeBatch(deps, requests.map(entry));
    expect(tf.memory().numTensors).toBe(tensorsBefore);
    cache.close();
  });

  it('SERVE_PRECISION: float32 serves the float32 weights, compact within 1e-3 relative with the same top-1', async () => {
    const answers = async (precision: 'float32' | 'compact') => {
      const config = loadConfig({ SERVE_PRECISION: precision, BATCH_MAX_WAIT_MS: '0' });
      const engine = ServingEngine.fromConfig(config, backbone, blobs);
      try {
        const out = await Promise.all(stored.map((s) => engine.classify({ tenantId: 't', adapter: s.ref, images: pixels.map((p) => ({ pixels: p })) })));
        return out.map((items) => items.map((it) => Array.from(it.answers[0].logits)));
      } finally {
        await engine.close();
      }
    };
    const exact = await answers('float32');
    const compact = await answers('compact');
    stored.forEach((s, a) =>
      pixels.forEach((p, i) => {
        expect(maxAbsDiff(exact[a][i], referenceLogits(backbone, s.bytes, p, 'float32').logits)).toBeLessThan(1e-5);
        const scale = Math.max(...exact[a][i].map(Math.abs));
        expect(maxAbsDiff(compact[a][i], exact[a][i]) / scale).toBeLessThan(1e-3);
        expect(compact[a][i].indexOf(Math.max(...compact[a][i]))).toBe(exact[a][i].indexOf(Math.max(...exact[a][i])));
      }),
    );
  });

  it("the engine's totals are the sums of the timings its batches returned; its callers' images stay unwritten", async () => {
    const engine = makeEngine(backbone, blobs, { prefixCacheBytes: 1 << 20, maxWaitMs: 0 });
    const image: EngineImage = { pixels: pixels[0] };
    const [r1] = await engine.classify({ tenantId: 't', adapter: stored[0].ref, images: [image] });
    const r2 = await engine.classifyFanOut({ tenantId: 't', image, adapters: [stored[0].ref, stored[1].ref] });
    expect(Object.keys(image)).toEqual(['pixels']);
    expect(r2.batch.prefixCached).toBe(true); // the executor's own hash keyed the prefix cache
    const totals = engine.stats().batches;
    expect(totals).toMatchObject({ batches: 2, images: 2, rows: 3 });
    expect(totals.prefixMs).toBeCloseTo(r1.timings.prefixMs + r2.timings.prefixMs, 6);
    expect(totals.adapterMs).toBeCloseTo(r1.timings.adapterMs + r2.timings.adapterMs, 6);
    await engine.close();
  });
});
