/**
 * Overload: a burst beyond the queue's capacity gets typed rejections at once, every accepted
 * request completes with the right answer, and the tensor count returns to where it was.
 */
import fs from 'node:fs/promises';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError, isAppError } from '../../src/errors.js';
import { initBackend, type Backbone } from '../../src/model/index.js';
import type { ItemResult } from '../../src/serve/index.js';
import { DiskBlobStore } from '../../src/storage/index.js';
import { makeTempDir } from '../helpers/db.js';
import { tinyBackbone } from '../helpers/tiny-backbone.js';
import { makeEngine, maxAbsDiff, randomImages, referenceLogits, storeAdapters, TINY, type StoredAdapter } from './engine-helpers.js';

describe('engine under overload', () => {
  let backbone: Backbone;
  let dir: string;
  let blobs: DiskBlobStore;
  let stored: StoredAdapter[];
  let images: Float32Array[];

  beforeAll(async () => {
    await initBackend('wasm');
    backbone = tinyBackbone(TINY);
    dir = await makeTempDir('dtl-overload');
    blobs = await DiskBlobStore.open({ root: dir, fsync: false });
    stored = await storeAdapters(blobs, backbone, 6);
    images = randomImages(4, backbone, 3);
  });
  afterAll(async () => {
    backbone.dispose();
    await blobs.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('a burst past the queue caps: queue_full with Retry-After, the rest answered, tensors back to baseline', async () => {
    const start = tf.memory().numTensors;
    const engine = makeEngine(backbone, blobs, { maxBatchSize: 4, maxWaitMs: 1, queueMaxTotal: 12, queueMaxPerTenant: 5 });
    await engine.preload(stored.map((s) => s.ref));
    const warm = tf.memory().numTensors;

    const tenants = 6;
    const perTenant = 10;
    const burst: Array<{ tenant: number; adapter: number; image: number; promise: Promise<ItemResult[]> }> = [];
    for (let k = 0; k < perTenant; k++) {
      for (let t = 0; t < tenants; t++) {
        const adapter = (t + k) % stored.length;
        const image = k % images.length;
        burst.push({
          tenant: t,
          adapter,
          image,
          promise: engine.classify({ tenantId: `tenant-${t}`, adapter: stored[adapter].ref, images: [{ pixels: images[image] }] }),
        });
      }
    }
    const settled = await Promise.allSettled(burst.map((b) => b.promise));
    const rejected = settled.filter((s): s is PromiseRejectedResult => s.status === 'rejected');
    const accepted = settled.filter((s) => s.status === 'fulfilled');
    expect(accepted.length).toBe(12); // submitted in one tick: exactly the total cap gets in
    expect(rejected.length).toBe(tenants * perTenant - 12);
    for (const r of rejected) {
      expect(isAppError(r.reason)).toBe(true);
      const err = r.reason as AppError;
      expect(err.code).toBe('queue_full');
      expect(err.status).toBe(429);
      expect(err.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    }
    // Every accepted request got its own adapter's answer for its own image.
    settled.forEach((s, i) => {
      if (s.status !== 'fulfilled') return;
      const b = burst[i];
      const answer = s.value[0].answers[0];
      expect(answer.key).toBe(stored[b.adapter].ref.key);
      expect(maxAbsDiff(answer.logits, referenceLogits(backbone, stored[b.adapter].bytes, images[b.image]).logits)).toBeLessThan(1e-5);
    });
    // Fairness: the first 12 admitted were spread over all tenants, none over its cap.
    const perTenantAccepted = new Map<number, number>();
    settled.forEach((s, i) => s.status === 'fulfilled' && perTenantAccepted.set(burst[i].tenant, (perTenantAccepted.get(burst[i].tenant) ?? 0) + 1));
    expect(perTenantAccepted.size).toBe(tenants);
    for (const n of perTenantAccepted.values()) expect(n).toBeLessThanOrEqual(5);

    const stats = engine.stats();
    expect(stats.batcher.rejections.queue_full).toBe(rejected.length);
    expect(stats.batcher.completed).toBe(12);
    expect(stats.batcher.queueDepth).toBe(0);
    expect(tf.memory().numTensors).toBe(warm);
    await engine.close();
    expect(tf.memory().numTensors).toBe(start);
  });

  it('one tenant flooding hits its own cap while another tenant still gets in', async () => {
    const engine = makeEngine(backbone, blobs, { maxBatchSize: 2, maxWaitMs: 1, queueMaxTotal: 100, queueMaxPerTenant: 3 });
    const flood = Array.from({ length: 20 }, () => engine.classify({ tenantId: 'noisy', adapter: stored[0].ref, images: [{ pixels: images[0] }] }));
    const quiet = engine.classify({ tenantId: 'quiet', adapter: stored[1].ref, images: [{ pixels: images[1] }] });
    const results = await Promise.allSettled(flood);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(3);
    const reasons = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => (r.reason as AppError).details?.scope);
    expect(new Set(reasons)).toEqual(new Set(['tenant']));
    const q = await quiet;
    expect(maxAbsDiff(q[0].answers[0].logits, referenceLogits(backbone, stored[1].bytes, images[1]).logits)).toBeLessThan(1e-5);
    await engine.close();
  });

  it('a request whose deadline passes in the queue fails with deadline_exceeded; the batch ahead completes', async () => {
    const engine = makeEngine(backbone, blobs, { maxBatchSize: 64, maxWaitMs: 0 });
    await engine.preload([stored[2].ref]);
    const big = engine.classify({ tenantId: 'a', adapter: stored[2].ref, images: Array.from({ length: 64 }, (_, i) => ({ pixels: images[i % 4] })) });
    // Queued behind a full batch; its 1 ms deadline passes while that batch computes.
    const late = engine.classify({ tenantId: 'b', adapter: stored[2].ref, images: [{ pixels: images[0] }], deadline: Date.now() + 1 });
    await expect(late).rejects.toMatchObject({ code: 'deadline_exceeded' });
    expect((await big).length).toBe(64);
    expect(engine.stats().batcher.rejections.deadline_exceeded).toBe(1);
    await engine.close();
  });

  it('drain finishes queued work and refuses new requests with unavailable', async () => {
    const engine = makeEngine(backbone, blobs, { maxBatchSize: 2, maxWaitMs: 50 });
    const queued = Array.from({ length: 5 }, (_, i) => engine.classify({ tenantId: `t${i}`, adapter: stored[3].ref, images: [{ pixels: images[1] }] }));
    const drained = engine.drain();
    await expect(engine.classify({ tenantId: 'x', adapter: stored[3].ref, images: [{ pixels: images[1] }] })).rejects.toMatchObject({ code: 'unavailable' });
    await drained;
    expect((await Promise.all(queued)).length).toBe(5);
    await engine.close();
  });
});
