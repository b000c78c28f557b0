/**
 * The engine over real blob stores (disk and an in-process S3 server): single-flight loading of a
 * cold adapter, eviction under the byte budget, and new versions seen by the next request.
 */
import fs from 'node:fs/promises';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend, loadResidentAdapter, type Backbone } from '../../src/model/index.js';
import { DiskBlobStore, type BlobStore } from '../../src/storage/index.js';
import { makeTempDir } from '../helpers/db.js';
import { startS3, type TestS3 } from '../helpers/s3.js';
import { tinyBackbone } from '../helpers/tiny-backbone.js';
import { makeEngine, maxAbsDiff, randomImages, referenceLogits, storeAdapters, TINY, variedSpec, type StoredAdapter } from './engine-helpers.js';

/** The real store, with its reads counted (every other call passes straight through). */
function counted(store: BlobStore): { store: BlobStore; reads: Map<string, number> } {
  const reads = new Map<string, number>();
  const wrapped = Object.create(store) as BlobStore;
  wrapped.getBuffer = async (key: string) => {
    reads.set(key, (reads.get(key) ?? 0) + 1);
    return store.getBuffer(key);
  };
  return { store: wrapped, reads };
}

const targets: Array<{ name: string; open: () => Promise<{ store: BlobStore; stop: () => Promise<void> }> }> = [
  {
    name: 'disk',
    open: async () => {
      const dir = await makeTempDir('dtl-engine-disk');
      const store = await DiskBlobStore.open({ root: dir, fsync: false });
      return { store, stop: async () => { await store.close(); await fs.rm(dir, { recursive: true, force: true }); } };
    },
  },
  {
    name: 's3rver',
    open: async () => {
      const s3: TestS3 = await startS3();
      return { store: s3.store, stop: () => s3.stop() };
    },
  },
];

describe.each(targets)('engine over a real blob store: $name', ({ open }) => {
  let backbone: Backbone;
  let store: BlobStore;
  let stop: () => Promise<void>;
  let stored: StoredAdapter[];
  /** Three adapters of one spec (equal resident size). */
  let same: StoredAdapter[];
  let images: Float32Array[];

  beforeAll(async () => {
    await initBackend('wasm');
    backbone = tinyBackbone(TINY);
    ({ store, stop } = await open());
    stored = await storeAdapters(store, backbone, 6, { prefix: 'tenant-a/adapters' });
    same = await storeAdapters(store, backbone, 3, { prefix: 'tenant-b/adapters', spec: () => variedSpec(7), seed: 3 });
    images = randomImages(3, backbone, 9);
  });
  afterAll(async () => {
    await stop();
    backbone.dispose();
  });

  it('N concurrent requests for one cold adapter cause one blob read and one load', async () => {
    const { store: blobs, reads } = counted(store);
    const engine = makeEngine(backbone, blobs, { maxBatchSize: 4, maxWaitMs: 1 });
    const n = 24;
    // Different tenants and batch sizes: the requests span several batches while the load runs.
    const results = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        engine.classify({ tenantId: `t${i % 5}`, adapter: stored[0].ref, images: [{ pixels: images[i % 3] }] }),
      ),
    );
    expect(reads.get(stored[0].ref.objectKey)).toBe(1);
    const s = engine.stats().adapterCache;
    expect(s.loads).toBe(1);
    expect(s.loadFailures).toBe(0);
    expect(s.misses).toBeGreaterThanOrEqual(1);
    expect(s.hits + s.misses).toBe(engine.stats().batcher.batchesRun);
    const ref = images.map((img) => referenceLogits(backbone, stored[0].bytes, img));
    results.forEach((r, i) => expect(maxAbsDiff(r[0].answers[0].logits, ref[i % 3].logits)).toBeLessThan(1e-5));
    await engine.close();
  });

  it('concurrent cold adapters in one batch: one read each, however many requests name them', async () => {
    const { store: blobs, reads } = counted(store);
    const engine = makeEngine(backbone, blobs, { maxBatchSize: 64, maxWaitMs: 20 });
    await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        engine.classifyFanOut({ tenantId: `t${i % 3}`, image: { pixels: images[0] }, adapters: [stored[i % 4].ref, stored[(i + 1) % 4].ref] }),
      ),
    );
    for (const s of stored.slice(0, 4)) expect(reads.get(s.ref.objectKey)).toBe(1);
    expect(engine.stats().adapterCache.loads).toBe(4);
    await engine.close();
  });

  it('the byte budget forces eviction; an evicted adapter is read again when next needed', async () => {
    const { store: blobs, reads } = counted(store);
    const baseline = tf.memory().numTensors;
    const one = loadResidentAdapter(same[0].bytes, backbone.config, 'compact').byteSize;
    const budget = Math.floor(2.5 * one); // two fit, three do not
    const engine = makeEngine(backbone, blobs, { adapterCacheBytes: budget, maxWaitMs: 0 });
    const px = [{ pixels: images[1] }];
    for (const i of [0, 1, 2]) await engine.classify({ tenantId: 't', adapter: same[i].ref, images: px });
    let s = engine.stats().adapterCache;
    expect(s.evictions).toBeGreaterThanOrEqual(1);
    expect(s.residentBytes).toBeLessThanOrEqual(budget);
    const first = same[0];
    expect(reads.get(first.ref.objectKey)).toBe(1);
    const again = await engine.classify({ tenantId: 't', adapter: first.ref, images: px });
    s = engine.stats().adapterCache;
    expect(reads.get(first.ref.objectKey)).toBe(2);
    expect(s.loads).toBe(4);
    expect(maxAbsDiff(again[0].answers[0].logits, referenceLogits(backbone, first.bytes, images[1]).logits)).toBeLessThan(1e-5);
    // Resident = what the budget allows; closing frees the rest: back to the count before.
    expect(engine.stats().adapterCache.residentCount).toBe(2);
    await engine.close();
    expect(tf.memory().numTensors).toBe(baseline);
  });

  it('a new version is a new key: the next request loads and answers with it', async () => {
    const { store: blobs, reads } = counted(store);
    const engine = makeEngine(backbone, blobs, { maxWaitMs: 0 });
    const v1 = stored[4];
    const v2 = { ...stored[5], ref: { ...stored[5].ref, key: 'v2-of-adapter-4' } };
    const px = [{ pixels: images[2] }];
    const a = await engine.classify({ tenantId: 't', adapter: v1.ref, images: px });
    const b = await engine.classify({ tenantId: 't', adapter: v2.ref, images: px });
    expect(a[0].answers[0].key).toBe(v1.ref.key);
    expect(b[0].answers[0].key).toBe('v2-of-adapter-4');
    expect(maxAbsDiff(b[0].answers[0].logits, referenceLogits(backbone, v2.bytes, images[2]).logits)).toBeLessThan(1e-5);
    expect(reads.get(v2.ref.objectKey)).toBe(1);
    // The old version stays resident (requests pinned to it still work) until evicted.
    const c = await engine.classify({ tenantId: 't', adapter: v1.ref, images: px });
    expect(maxAbsDiff(c[0].answers[0].logits, a[0].answers[0].logits)).toBe(0);
    expect(reads.get(v1.ref.objectKey)).toBe(1);
    await engine.close();
  });
});
