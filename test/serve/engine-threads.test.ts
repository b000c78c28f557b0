/**
 * The serving engine with its batches on executor threads (SERVE_WORKERS ≥ 1): answers equal
 * one-at-a-time predictions as in process; both executors serve; evictions, preloads and stats
 * keep their meaning across threads; and a thread killed mid-batch fails only that batch's
 * requests with a retryable 503, is restarted and counted in /metrics — no request goes unanswered.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError, isAppError } from '../../src/errors.js';
import { createMetrics } from '../../src/metrics.js';
import { initBackend, type Backbone } from '../../src/model/index.js';
import { ServingEngine, type ItemResult } from '../../src/serve/index.js';
import { DiskBlobStore } from '../../src/storage/index.js';
import { ThreadExecutor } from '../../src/threads/serve-executor-client.js';
import { makeTempDir } from '../helpers/db.js';
import { tinyBackbone, writeTinyBackboneDir } from '../helpers/tiny-backbone.js';
import { maxAbsDiff, randomImages, referenceLogits, storeAdapters, TINY, type StoredAdapter } from './engine-helpers.js';

const ADAPTERS = 12;
const IMAGES = 4;
/** Slow enough that a batch of 48 images takes a while on wasm: the kill lands mid-batch. */
const SLOW = { width: 96, depth: 8, heads: 2, mlpDim: 384, patchSize: 4, imageSize: 32, seed: 5 } as const;

describe('ServingEngine on executor threads', () => {
  let dir: string;
  let blobs: DiskBlobStore;
  let backbone: Backbone;
  let slow: Backbone;
  let stored: StoredAdapter[];
  let slowAdapters: StoredAdapter[];
  let images: Float32Array[];
  let reference: Array<Array<{ logits: Float32Array; probs: Float32Array }>>;
  const engines: ServingEngine[] = [];

  const env = (backboneDir: string, engine: string) => ({
    BACKBONE: backboneDir,
    DATA_DIR: path.join(dir, 'data'),
    TFJS_BACKEND: 'wasm',
    BACKBONE_ENGINE: engine,
    ENGINE_THREADS: '1',
    LOG_LEVEL: 'silent',
  });

  function threadEngine(b: Backbone, backboneDir: string, n: number, overrides: { maxBatchSize?: number; engine?: string } = {}) {
    const executors = Array.from(
      { length: n },
      (_, index) =>
        new ThreadExecutor({
          data: { env: env(backboneDir, overrides.engine ?? 'tfjs'), index, nice: 0, adapterCacheBytes: 64 << 20, prefixCacheBytes: 0 },
          perImage: b.config.imageSize ** 2 * 3,
        }),
    );
    const engine = new ServingEngine({
      backbone: b,
      executors,
      adapterCacheBytes: 64 << 20,
      maxBatchSize: overrides.maxBatchSize ?? 4,
      maxWaitMs: 0,
      queueMaxTotal: 10_000,
      queueMaxPerTenant: 10_000,
      requestDeadlineMs: 60_000,
    });
    engines.push(engine);
    return { engine, executors };
  }

  beforeAll(async () => {
    await initBackend('wasm');
    dir = await makeTempDir('dtl-engine-threads');
    await writeTinyBackboneDir(path.join(dir, 'tiny'), TINY);
    await writeTinyBackboneDir(path.join(dir, 'slow'), SLOW);
    backbone = tinyBackbone(TINY);
    slow = tinyBackbone(SLOW);
    blobs = await DiskBlobStore.open({ root: path.join(dir, 'data', 'blobs'), fsync: false });
    stored = await storeAdapters(blobs, backbone, ADAPTERS);
    slowAdapters = await storeAdapters(blobs, slow, 1, { prefix: 'slow' });
    images = randomImages(IMAGES, backbone, 21);
    reference = stored.map((s) => images.map((img) => referenceLogits(backbone, s.bytes, img)));
  });
  afterAll(async () => {
    for (const e of engines) await e.close();
    backbone.dispose();
    slow.dispose();
    await blobs.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it.each(['tfjs', 'onnxruntime'])('two executors (%s): batched, mixed and fan-out answers equal one-at-a-time predictions to 1e-5; both serve', async (backboneEngine) => {
    const { engine } = threadEngine(backbone, path.join(dir, 'tiny'), 2, { engine: backboneEngine });
    await engine.ready();
    const checks: Array<{ result: Promise<ItemResult>; adapters: number[]; image: number }> = [];
    for (let n = 0; n < 40; n++) {
      const image = n % IMAGES;
      if (n % 3 === 0) {
        const adapters = [n % ADAPTERS, (n * 5 + 1) % ADAPTERS, n % ADAPTERS];
        const result = engine.classifyFanOut({ tenantId: `t${n % 5}`, image: { pixels: images[image] }, adapters: adapters.map((a) => stored[a].ref) });
        checks.push({ result, adapters, image });
      } else {
        const a = (n * 7) % ADAPTERS;
        const result = engine.classify({ tenantId: `t${n % 5}`, adapter: stored[a].ref, images: [{ pixels: images[image].slice() }] }).then((r) => r[0]);
        checks.push({ result, adapters: [a], image });
      }
    }
    for (const c of checks) {
      const result = await c.result;
      expect(result.answers.map((x) => x.key)).toEqual(c.adapters.map((a) => stored[a].ref.key));
      c.adapters.forEach((a, k) => {
        expect(maxAbsDiff(result.answers[k].logits, reference[a][c.image].logits)).toBeLessThan(1e-5);
        expect(maxAbsDiff(result.answers[k].probs, reference[a][c.image].probs)).toBeLessThan(1e-5);
      });
    }
    const stats = engine.stats();
    expect(stats.batcher.completed).toBe(40);
    expect(stats.executors).toMatchObject({ count: 2, restarts: 0, ready: 2 });
    for (const b of stats.executors.batchesByExecutor) expect(b).toBeGreaterThan(0);
    expect(stats.adapterCache.loads).toBeGreaterThanOrEqual(ADAPTERS);
    expect(stats.tensors).toBeGreaterThan(0); // the threads' backbones and residents, not this thread's
    await engine.close();
  }, 60_000);

  it('preload, isResident and evictVersions keep their meaning across threads', async () => {
    const { engine } = threadEngine(backbone, path.join(dir, 'tiny'), 2);
    await engine.ready();
    const [ok, bad] = await engine.preload([stored[0].ref, { ...stored[1].ref, key: 'v-missing', objectKey: 'adapters/none.safetensors' }], { pin: true });
    expect(ok.error).toBeUndefined();
    expect(bad.error).toBeInstanceOf(AppError);
    expect(engine.isResident(stored[0].ref.key)).toBe(true);
    // Preloaded into every executor: loads counted in each.
    expect(engine.stats().adapterCache.residentCount).toBe(2);
    expect(engine.evictVersions([stored[0].ref.key, 'v-never-seen'])).toBe(1);
    expect(engine.isResident(stored[0].ref.key)).toBe(false);
    // The threads forget it too; the next request loads it again and answers the same.
    const [r] = await engine.classify({ tenantId: 't', adapter: stored[0].ref, images: [{ pixels: images[1] }] });
    expect(maxAbsDiff(r.answers[0].logits, reference[0][1].logits)).toBeLessThan(1e-5);
    expect(engine.stats().adapterCache.invalidations).toBeGreaterThanOrEqual(2);
    await engine.close();
    expect(engine.stats().executors.ready).toBe(0);
  }, 60_000);

  it('a thread killed mid-batch fails only that batch with a retryable 503, is restarted and counted; nothing goes unanswered', async () => {
    const { engine, executors } = threadEngine(slow, path.join(dir, 'slow'), 1, { maxBatchSize: 48 });
    const metrics = createMetrics({ defaultMetrics: false });
    metrics.setSources({ executors: () => engine.stats().executors });
    await engine.ready();
    const ref = slowAdapters[0].ref;
    const pics = randomImages(48, slow, 3);
    await engine.classify({ tenantId: 't', adapter: ref, images: [{ pixels: pics[0] }] }); // resident

    const t0 = Date.now();
    const first = engine.classify({ tenantId: 'a', adapter: ref, images: pics.map((pixels) => ({ pixels })) });
    const firstOutcome = first.then(() => 'ok' as const, (err: unknown) => err);
    while (engine.stats().executors.busy === 0) await new Promise((r) => setImmediate(r));
    // Queued behind it while it runs: the next batch, which the restarted thread must serve.
    const second = engine.classify({ tenantId: 'b', adapter: ref, images: pics.slice(0, 2).map((pixels) => ({ pixels })) });
    await new Promise((r) => setTimeout(r, 30));
    await executors[0].terminate();

    const err = await firstOutcome;
    expect(isAppError(err) && err.code).toBe('unavailable');
    expect((err as AppError).status).toBe(503);
    expect((err as AppError).retryAfterSeconds).toBe(1);
    // The killed batch really was in flight (it would have taken longer than it took to fail).
    expect(Date.now() - t0).toBeLessThan(10_000);
    const answered = await second;
    expect(answered).toHaveLength(2);
    expect(answered[0].answers[0].probs.length).toBe(slowAdapters[0].spec.labels.length);

    const stats = engine.stats();
    expect(stats.executors.restarts).toBe(1);
    expect(stats.executors.ready).toBe(1);
    expect(stats.batcher.failed).toBe(1);
    expect(await metrics.render()).toMatch(/^dtl_serve_executor_restarts_total 1$/m);
    await engine.close();
  }, 120_000);
});
