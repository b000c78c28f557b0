/**
 * The serving engine on a Swin backbone (the golden Swin fixture's): mixed-tenant batches of
 * varied DTL / DTL+ adapters with different splits and fan-out answer what each adapter gives
 * alone; asked for onnxruntime, the Swin stays on tfjs; the prefix-activation cache
 * (PREFIX_CACHE_BYTES > 0) gives the same answers, also where a cached longer prefix is cut —
 * at the checkpoint's 64 px and at 72 px (another input size: padded windows, odd merges).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blockShape, detachNative, initBackend, loadBackboneFromDir, startBackboneEngine, type Backbone } from '../../src/model/index.js';
import { DiskBlobStore } from '../../src/storage/index.js';
import { makeTempDir } from '../helpers/db.js';
import { makeEngine, maxAbsDiff, randomImages, referenceLogits, storeAdapters, variedSpec, type StoredAdapter } from './engine-helpers.js';

const FIXTURE = path.resolve(import.meta.dirname, '../fixtures/dtl-golden-swin-hf');
const ADAPTERS = 6;
const IMAGES = 3;

describe.each([
  { size: 64, stage1: [256, 16] },
  { size: 72, stage1: [324, 16] },
])('ServingEngine on a Swin backbone at $size px', ({ size, stage1 }) => {
  let backbone: Backbone;
  let dir: string;
  let blobs: DiskBlobStore;
  let stored: StoredAdapter[];
  let images: Float32Array[];
  let reference: Array<Array<{ logits: Float32Array; probs: Float32Array }>>;

  beforeAll(async () => {
    await initBackend('wasm');
    backbone = await loadBackboneFromDir(FIXTURE, { imageSize: size });
    expect(backbone.config.imageSize).toBe(size);
    dir = await makeTempDir('dtl-swin-engine');
    blobs = await DiskBlobStore.open({ root: dir, fsync: false });
    stored = await storeAdapters(blobs, backbone, ADAPTERS, { spec: (i) => variedSpec(i + 3, backbone.config.depth) });
    images = randomImages(IMAGES, backbone, 8);
    reference = stored.map((s) => images.map((img) => referenceLogits(backbone, s.bytes, img)));
  });
  afterAll(async () => {
    await detachNative(backbone);
    backbone.dispose();
    await blobs.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('asked for onnxruntime, a Swin backbone stays on tfjs (logged)', async () => {
    const log: string[] = [];
    expect(await startBackboneEngine(backbone, 'onnxruntime', { threads: 1, provider: 'cpu' }, (m) => log.push(m))).toBe('tfjs');
    expect(log.join('\n')).toMatch(/ViT backbones only; this backbone is a Swin/);
  });

  it('the adapters differ in split and kind', () => {
    expect(new Set(stored.map((s) => Math.min(...s.spec.addAfterBlocks))).size).toBeGreaterThanOrEqual(3);
    expect(stored.some((s) => s.spec.fusionKernel > 0) && stored.some((s) => s.spec.fusionKernel === 0)).toBe(true);
    expect(blockShape(backbone.config, 2)).toEqual(stage1);
  });

  it('mixed-tenant batches with fan-out equal each adapter alone (1e-5); nothing leaks', async () => {
    const engine = makeEngine(backbone, blobs);
    const baseline = tf.memory().numTensors;
    try {
      const pending = [
        ...stored.map((s, a) => engine.classify({ tenantId: `t${a}`, adapter: s.ref, images: images.map((pixels) => ({ pixels: pixels.slice() })) }).then((r) => r.map((x, i) => ({ x, checks: [{ a, i }] })))),
        ...images.map((pixels, i) =>
          engine.classifyFanOut({ tenantId: 'fan', image: { pixels }, adapters: stored.map((s) => s.ref) }).then((x) => [{ x, checks: stored.map((_, a) => ({ a, i })) }]),
        ),
      ];
      for (const results of await Promise.all(pending)) {
        for (const { x, checks } of results) {
          expect(x.answers).toHaveLength(checks.length);
          checks.forEach(({ a, i }, k) => {
            expect(x.answers[k].key).toBe(stored[a].ref.key);
            expect(maxAbsDiff(x.answers[k].logits, reference[a][i].logits)).toBeLessThan(1e-5);
            expect(maxAbsDiff(x.answers[k].probs, reference[a][i].probs)).toBeLessThan(1e-5);
          });
        }
      }
      expect(engine.stats().batcher.completed).toBe(pending.length);
    } finally {
      await engine.close();
    }
    expect(tf.memory().numTensors).toBe(baseline);
  });

  it('with the prefix-activation cache on, the same answers (1e-5): entries cut within a stage, refused at a stage boundary', async () => {
    const engine = makeEngine(backbone, blobs, { prefixCacheBytes: 64 << 20 });
    const split = (a: number) => Math.min(...stored[a].spec.addAfterBlocks) + 1;
    // Longest prefix first, so later (shorter) splits find entries computed further along.
    const order = [...stored.keys()].sort((x, y) => split(y) - split(x));
    const opens = (s: number) => backbone.config.swin!.blockStage[s] !== backbone.config.swin!.blockStage[s - 1];
    // An entry (computed at the longest split) serves split s when s is its own, or when block s does not open a stage.
    const served = (a: number) => split(a) === split(order[0]) || !opens(split(a));
    expect(order.some((a) => split(a) < split(order[0]) && !opens(split(a)))).toBe(true);
    expect(order.some((a) => !served(a))).toBe(true);
    const baseline = tf.memory().numTensors;
    try {
      for (let pass = 0; pass < 2; pass++) {
        for (const a of order) {
          const r = await engine.classify({ tenantId: `t${a}`, adapter: stored[a].ref, images: images.map((pixels, i) => ({ pixels: pixels.slice(), hash: `img-${i}` })) });
          r.forEach((x, i) => {
            expect(maxAbsDiff(x.answers[0].logits, reference[a][i].logits)).toBeLessThan(1e-5);
            expect(x.batch.prefixCached).toBe((pass > 0 || a !== order[0]) && served(a));
          });
        }
      }
      const stats = engine.stats().prefixCache;
      expect(stats.hits).toBe(IMAGES * (2 * order.filter(served).length - 1));
      expect(stats.entries).toBe(IMAGES);
    } finally {
      await engine.close();
    }
    expect(tf.memory().numTensors).toBe(baseline);
  });
});
