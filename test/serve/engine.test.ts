/**
 * The serving engine against one-at-a-time prediction: batched, mixed-tenant, fan-out and
 * prefix-cached answers must equal what each adapter gives alone, for every adapter and image —
 * with the frozen blocks on tfjs and on onnxruntime.
 */
import fs from 'node:fs/promises';
import * as tf from '@tensorflow/tfjs';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAppError } from '../../src/errors.js';
import { detachNative, initBackend, startBackboneEngine, type Backbone } from '../../src/model/index.js';
import type { ItemResult } from '../../src/serve/index.js';
import { DiskBlobStore } from '../../src/storage/index.js';
import { makeTempDir } from '../helpers/db.js';
import { tinyBackbone } from '../helpers/tiny-backbone.js';
import { makeEngine, maxAbsDiff, randomImages, referenceLogits, storeAdapters, TINY, type StoredAdapter } from './engine-helpers.js';

const ADAPTERS = 56;
const IMAGES = 6;

describe.each(['tfjs', 'onnxruntime'] as const)('ServingEngine on the %s backbone engine: batched answers equal one-at-a-time predictions (tfjs)', (engineName) => {
  let backbone: Backbone;
  let dir: string;
  let blobs: DiskBlobStore;
  let stored: StoredAdapter[];
  let images: Float32Array[];
  /** reference[a][i] = adapter a alone on image i. */
  let reference: Array<Array<{ logits: Float32Array; probs: Float32Array }>>;

  beforeAll(async () => {
    await initBackend('wasm');
    backbone = tinyBackbone(TINY);
    dir = await makeTempDir('dtl-engine');
    blobs = await DiskBlobStore.open({ root: dir, fsync: false });
    stored = await storeAdapters(blobs, backbone, ADAPTERS);
    images = randomImages(IMAGES, backbone, 21);
    reference = stored.map((s) => images.map((img) => referenceLogits(backbone, s.bytes, img)));
    // The references above are tfjs alone; the engine under test runs the batches.
    expect(await startBackboneEngine(backbone, engineName, { threads: 1, provider: 'cpu' })).toBe(engineName);
  });
  afterAll(async () => {
    await detachNative(backbone);
    backbone.dispose();
    await blobs.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('the adapter set is varied: DTL and DTL+, label counts, ≥ 4 distinct splits', () => {
    const splits = new Set(stored.map((s) => Math.min(...s.spec.addAfterBlocks) + 1));
    expect(splits.size).toBeGreaterThanOrEqual(4);
    expect(stored.some((s) => s.spec.fusionKernel > 0)).toBe(true);
    expect(stored.some((s) => s.spec.fusionKernel === 0)).toBe(true);
    expect(new Set(stored.map((s) => s.spec.labels.length)).size).toBeGreaterThanOrEqual(4);
  });

  it('any two adapters with the same label count answer differently (so a mix-up cannot pass unnoticed)', () => {
    // The property below compares to 1e-5; an adapter swapped for another of the same shape must
    // move some logit by far more than that on the images used.
    for (let a = 0; a < ADAPTERS; a++) {
      for (let b = a + 1; b < ADAPTERS; b++) {
        if (stored[a].spec.labels.length !== stored[b].spec.labels.length) continue;
        for (let i = 0; i < IMAGES; i++) {
          expect(maxAbsDiff(reference[a][i].logits, reference[b][i].logits)).toBeGreaterThan(1e-3);
        }
      }
    }
    // And the images differ per adapter (an image mix-up is caught too).
    for (let a = 0; a < ADAPTERS; a++) {
      for (let i = 1; i < IMAGES; i++) expect(maxAbsDiff(reference[a][0].logits, reference[a][i].logits)).toBeGreaterThan(1e-3);
    }
  });

  it('several images through one adapter', async () => {
    const engine = makeEngine(backbone, blobs);
    const results = await engine.classify({ tenantId: 't', adapter: stored[3].ref, images: images.map((pixels) => ({ pixels })) });
    expect(results).toHaveLength(IMAGES);
    results.forEach((r, i) => {
      expect(r.answers).toHaveLength(1);
      expect(r.answers[0].key).toBe(stored[3].ref.key);
      expect(r.answers[0].labels).toEqual(stored[3].spec.labels);
      expect(maxAbsDiff(r.answers[0].logits, reference[3][i].logits)).toBeLessThan(1e-5);
      expect(maxAbsDiff(r.answers[0].probs, reference[3][i].probs)).toBeLessThan(1e-5);
    });
    await engine.close();
  });

  type Req =
    | { kind: 'single'; tenant: number; adapter: number; images: number[] }
    | { kind: 'fanout'; tenant: number; adapters: number[]; image: number };

  const reqArb: fc.Arbitrary<Req> = fc.oneof(
    fc.record({
      kind: fc.constant('single' as const),
      tenant: fc.nat(7),
      adapter: fc.nat(ADAPTERS - 1),
      images: fc.array(fc.nat(IMAGES - 1), { minLength: 1, maxLength: 3 }),
    }),
    fc.record({
      kind: fc.constant('fanout' as const),
      tenant: fc.nat(7),
      adapters: fc.array(fc.nat(ADAPTERS - 1), { minLength: 1, maxLength: 5 }),
      image: fc.nat(IMAGES - 1),
    }),
  );

  it('property: random interleavings across ≥ 50 adapters (mixed splits, DTL/DTL+, fan-out, prefix cache on/off)', async () => {
    const baseline = tf.memory().numTensors;
    await fc.assert(
      fc.asyncProperty(
        fc.array(reqArb, { minLength: 1, maxLength: 24 }),
        fc.integer({ min: 1, max: 24 }),
        fc.boolean(),
        fc.array(fc.nat(3), { minLength: 24, maxLength: 24 }),
        async (reqs, maxBatchSize, prefixCache, pauses) => {
          const engine = makeEngine(backbone, blobs, {
            maxBatchSize,
            maxWaitMs: 1,
            prefixCacheBytes: prefixCache ? 4 * 1024 * 1024 : 0,
            // Small enough that some runs evict and reload mid-stream.
            adapterCacheBytes: 40 * 1024,
          });
          try {
            const pending: Array<Promise<ItemResult[]>> = [];
            for (const [n, req] of reqs.entries()) {
              // Pauses between submits vary how requests fall into batches.
              for (let p = 0; p < pauses[n]; p++) await new Promise<void>((r) => setImmediate(r));
              const tenantId = `tenant-${req.tenant}`;
              if (req.kind === 'single') {
                pending.push(
                  engine.classify({
                    tenantId,
                    adapter: stored[req.adapter].ref,
                    // A fresh object per image: dedupe must work by content, not identity.
                    images: req.images.map((i) => ({ pixels: images[i].slice() })),
                  }),
                );
              } else {
                pending.push(
                  engine
                    .classifyFanOut({ tenantId, image: { pixels: images[req.image] }, adapters: req.adapters.map((a) => stored[a].ref) })
                    .then((r) => [r]),
                );
              }
            }
            const results = await Promise.all(pending);
            reqs.forEach((req, n) => {
              const pairs = req.kind === 'single'
                ? req.images.map((image, j) => ({ result: results[n][j], checks: [{ adapter: req.adapter, image }] }))
                : [{ result: results[n][0], checks: req.adapters.map((adapter) => ({ adapter, image: req.image })) }];
              for (const { result, checks } of pairs) {
                expect(result.answers).toHaveLength(checks.length);
                checks.forEach(({ adapter, image }, k) => {
                  const answer = result.answers[k];
                  expect(answer.key).toBe(stored[adapter].ref.key);
                  expect(answer.labels).toEqual(stored[adapter].spec.labels);
                  expect(maxAbsDiff(answer.logits, reference[adapter][image].logits)).toBeLessThan(1e-5);
                  expect(maxAbsDiff(answer.probs, reference[adapter][image].probs)).toBeLessThan(1e-5);
                });
              }
            });
            expect(engine.stats().batcher.completed).toBe(reqs.length);
          } finally {
            await engine.close();
          }
          // Closing frees every resident adapter: nothing of the run survives.
          expect(tf.memory().numTensors).toBe(baseline);
        },
      ),
      { numRuns: 25, seed: 4242, endOnFailure: true },
    );
  });

  it('a warm engine leaves no tensor behind after a batch', async () => {
    const engine = makeEngine(backbone, blobs, { prefixCacheBytes: 1 << 20 });
    const refs = stored.slice(0, 10).map((s) => s.ref);
    await engine.preload(refs);
    const before = tf.memory().numTensors;
    await Promise.all([
      engine.classifyFanOut({ tenantId: 'a', image: { pixels: images[0] }, adapters: refs }),
      engine.classify({ tenantId: 'b', adapter: refs[4], images: images.map((pixels) => ({ pixels })) }),
      engine.classifyFanOut({ tenantId: 'c', image: { pixels: images[0] }, adapters: refs.slice(2, 5) }),
    ]);
    expect(tf.memory().numTensors).toBe(before);
    expect(engine.stats().tensors).toBe(before);
    await engine.close();
  });

  it('the prefix cache reuses activations across requests and tenants, with identical answers', async () => {
    const engine = makeEngine(backbone, blobs, { prefixCacheBytes: 1 << 20, maxWaitMs: 0 });
    const image = images[2];
    const first = await engine.classifyFanOut({ tenantId: 'a', image: { pixels: image }, adapters: [stored[0].ref, stored[1].ref] });
    expect(first.batch.prefixCached).toBe(false);
    // Another tenant, another adapter, the same image content in a new array.
    const second = await engine.classify({ tenantId: 'b', adapter: stored[7].ref, images: [{ pixels: image.slice() }] });
    const stats = engine.stats().prefixCache;
    const splitFirst = first.batch.split;
    const splitSecond = second[0].batch.split;
    // A cached prefix serves any split up to the one it was computed at.
    expect(second[0].batch.prefixCached).toBe(splitSecond <= splitFirst);
    expect(stats.hits + stats.misses).toBe(2);
    expect(stats.insertions).toBeGreaterThanOrEqual(1);
    expect(maxAbsDiff(second[0].answers[0].logits, reference[7][2].logits)).toBeLessThan(1e-5);
    expect(maxAbsDiff(first.answers[1].logits, reference[1][2].logits)).toBeLessThan(1e-5);
    await engine.close();
  });

  it('a bad adapter fails only the requests that name it, and is not cached', async () => {
    const engine = makeEngine(backbone, blobs, { maxWaitMs: 20 });
    await blobs.putBuffer('broken/0.safetensors', Buffer.from('not a safetensors file'));
    const broken = { key: 'v-broken', objectKey: 'broken/0.safetensors', backboneId: backbone.identity };
    const foreign = { key: 'v-foreign', objectKey: stored[0].ref.objectKey, backboneId: 'another-backbone' };
    const missing = { key: 'v-missing', objectKey: 'broken/none.safetensors', backboneId: backbone.identity };
    const px = { pixels: images[1] };
    const settled = await Promise.allSettled([
      engine.classify({ tenantId: 'a', adapter: stored[5].ref, images: [px] }),
      engine.classify({ tenantId: 'b', adapter: broken, images: [px] }),
      engine.classifyFanOut({ tenantId: 'c', image: px, adapters: [stored[6].ref, foreign] }),
      engine.classify({ tenantId: 'd', adapter: missing, images: [px] }),
      engine.classify({ tenantId: 'e', adapter: stored[6].ref, images: [px] }),
    ]);
    const code = (s: PromiseSettledResult<unknown>) => (s.status === 'rejected' && isAppError(s.reason) ? s.reason.code : s.status);
    expect(settled.map(code)).toEqual(['fulfilled', 'invalid_adapter', 'adapter_backbone_mismatch', 'storage_error', 'fulfilled']);
    expect(engine.stats().batcher.batchesRun).toBe(1);
    const ok = settled[4] as PromiseFulfilledResult<ItemResult[]>;
    expect(maxAbsDiff(ok.value[0].answers[0].logits, reference[6][1].logits)).toBeLessThan(1e-5);
    // Failed loads are not cached: once the file is fixed, the next request loads it.
    expect(engine.stats().adapterCache.loadFailures).toBe(3);
    await blobs.putBuffer('broken/0.safetensors', stored[9].bytes);
    const fixed = await engine.classify({ tenantId: 'b', adapter: broken, images: [px] });
    expect(maxAbsDiff(fixed[0].answers[0].logits, reference[9][1].logits)).toBeLessThan(1e-5);
    await engine.close();
  });

  it('preload and requests naming the same cold adapter at once share one load', async () => {
    const engine = makeEngine(backbone, blobs, { maxWaitMs: 0 });
    for (let round = 0; round < 3; round++) {
      engine.evictVersions([stored[11].ref.key]);
      const [pre, res] = await Promise.all([
        engine.preload([stored[11].ref]),
        engine.classify({ tenantId: 't', adapter: stored[11].ref, images: [{ pixels: images[0] }] }),
        engine.preload([stored[11].ref]),
      ]);
      expect(pre[0].error).toBeUndefined();
      expect(maxAbsDiff(res[0].answers[0].logits, reference[11][0].logits)).toBeLessThan(1e-5);
    }
    expect(engine.stats().adapterCache.loads).toBe(3);
    await engine.close();
  });

  it('rejects malformed input with typed errors', async () => {
    const engine = makeEngine(backbone, blobs);
    await expect(engine.classify({ tenantId: 't', adapter: stored[0].ref, images: [{ pixels: new Float32Array(5) }] })).rejects.toMatchObject({ code: 'bad_request' });
    await expect(engine.classify({ tenantId: 't', adapter: stored[0].ref, images: [] })).rejects.toMatchObject({ code: 'validation_failed' });
    await expect(engine.classifyFanOut({ tenantId: 't', image: { pixels: images[0] }, adapters: [] })).rejects.toMatchObject({ code: 'validation_failed' });
    await engine.close();
    await expect(engine.classify({ tenantId: 't', adapter: stored[0].ref, images: [{ pixels: images[0] }] })).rejects.toMatchObject({ code: 'unavailable' });
  });
});
