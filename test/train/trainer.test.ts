/**
 * The trainer on a tiny backbone and a learnable shapes data set: it learns, every epoch after the
 * first reads the prefix from the cache, the cached run matches an uncached one, half-precision
 * rows barely move the loss curve, runs are deterministic per seed, and no tensor leaks.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend, predictLogits, type Backbone } from '../../src/model/index.js';
import { parseHyperparameters, type HyperparametersInput } from '../../src/train/hyperparameters.js';
import type { PreparedDataset } from '../../src/train/ingest/index.js';
import { trainAdapter, type EpochProgress, type TrainOptions } from '../../src/train/trainer.js';
import { tinyBackbone } from '../helpers/tiny-backbone.js';
import { TINY, shapesPrepared } from './helpers.js';

let backbone: Backbone;
/** 4 classes × 16 images, 4 of each in the test split (val held out from train). */
let ds: PreparedDataset;

beforeAll(async () => {
  await initBackend('wasm');
  backbone = tinyBackbone(TINY);
  ds = await shapesPrepared({ classes: 4, perClass: 16, seed: 5, test: 4 });
});
afterAll(() => backbone.dispose());

const BASE: HyperparametersInput = { epochs: 5, warmupEpochs: 1, batchSize: 16, lr: 1e-2, variant: 'dtl', seed: 3, patience: 0 };

async function run(h: HyperparametersInput, opts: Partial<TrainOptions> = {}) {
  const epochs: EpochProgress[] = [];
  const r = await trainAdapter({
    backbone,
    dataset: ds,
    hyperparameters: parseHyperparameters({ ...BASE, ...h }),
    cacheBytes: 1 << 30,
    cachePrecision: 'float32',
    onEpoch: (p) => void epochs.push(p),
    ...opts,
  });
  r.adapter.dispose();
  return { ...r, epochs, losses: r.metrics.lossCurve.map((p) => p.trainLoss) };
}

describe('trainAdapter', () => {
  it('learns, reports per-epoch progress and full metrics', async () => {
    const busy: number[] = [];
    const r = await run({ epochs: 12 }, { onBatch: (ms) => void busy.push(ms) });
    // An estimate for the first batch, then every batch reports how long it held the event loop:
    // 13 epochs × (3 train + 1 val batches of ≤ 16), then the 16 test images.
    expect(busy).toHaveLength(1 + 13 * (3 + 1) + 1);
    expect(busy.every((ms) => ms > 0)).toBe(true);
    const m = r.metrics;
    expect(m.split).toEqual({ train: 40, val: 8, test: 16, valSource: 'held-out' });
    expect(m.epochsRun).toBe(13);
    expect(r.epochs.map((p) => p.epoch)).toEqual([...Array(13).keys()].map((e) => e + 1));
    expect(r.losses.at(-1)!).toBeLessThan(r.losses[0] * 0.5);
    expect(m.evaluation.split).toBe('test');
    expect(m.evaluation.accuracy).toBeGreaterThanOrEqual(0.75);
    expect(m.evaluation.confusionMatrix.flat().reduce((a, b) => a + b, 0)).toBe(16);
    expect(m.evaluation.perClass.map((c) => c.support)).toEqual([4, 4, 4, 4]);
    expect(m.bestValAccuracy).toBe(Math.max(...m.lossCurve.map((p) => p.valAccuracy!)));
    // width 32, rank 'auto' = 8 (autoRank): 4 read blocks × (32·8 + 8·32) + head 32·4 + 4
    expect(m.trainableParams).toBe(4 * 512 + 128 + 4);
    expect(m.peakTensorBytes).toBeGreaterThan(m.stepPeakBytes);
    expect(m.stepPeakBytes).toBeGreaterThan(0);
    const p = r.epochs[3];
    expect(p.epochs).toBe(13);
    // Epoch 4 = the third cosine epoch (t = 2 of 12) after one warm-up epoch.
    expect(p.lr).toBeCloseTo(1e-2 * (0.5 + 0.5 * Math.cos((Math.PI * 2) / 12)), 7);
    expect(p.imagesPerSecond).toBeGreaterThan(0);
    expect(p.etaSeconds).toBeGreaterThan(0);
    expect(r.epochs.at(-1)!.etaSeconds).toBe(0);
  });

  it('epochs after the first read every prefix from the cache, and match an uncached run', async () => {
    const cached = await run({});
    const train = 40;
    const val = 8;
    // Epoch 1 computes train + val rows; later epochs compute nothing and hit the cache for all.
    expect(cached.epochs[0].cache).toMatchObject({ computed: train + val, hits: 0, storedRows: train + val });
    cached.epochs.slice(1).forEach((p, i) => expect(p.cache).toMatchObject({ computed: train + val, hits: (i + 1) * (train + val) }));
    // The final test evaluation computes (and caches) the 16 test rows.
    expect(cached.metrics.cache).toMatchObject({ computed: train + val + 16, storedRows: train + val + 16, overflowRows: 0 });

    const uncached = await run({}, { cacheBytes: 0 });
    uncached.epochs.forEach((p, e) => expect(p.cache).toMatchObject({ computed: (e + 1) * (train + val), hits: 0, storedRows: 0 }));
    expect(uncached.losses.length).toBe(cached.losses.length);
    uncached.losses.forEach((l, i) => expect(Math.abs(l - cached.losses[i])).toBeLessThan(1e-5));
    uncached.metrics.lossCurve.forEach((p, i) => expect(p.valAccuracy).toBe(cached.metrics.lossCurve[i].valAccuracy));

    // A budget for a third of the rows: the rest is recomputed each epoch, same numbers.
    const rowBytes = cached.metrics.cache.rowBytes;
    const partial = await run({}, { cacheBytes: 16 * rowBytes });
    expect(partial.metrics.cache.storedRows).toBe(16);
    expect(partial.metrics.cache.overflowRows).toBe(train + val + 16 - 16);
    expect(partial.metrics.cache.computed).toBe(train + val + 5 * (train + val - 16) + 16);
    partial.losses.forEach((l, i) => expect(Math.abs(l - cached.losses[i])).toBeLessThan(1e-5));
  });

  it('half-precision rows: half the bytes, loss curve within 1e-3 of float32', async () => {
    const f32 = await run({});
    const f16 = await run({}, { cachePrecision: 'float16' });
    expect(f16.metrics.cache.storedBytes * 2).toBe(f32.metrics.cache.storedBytes);
    const diff = Math.max(...f16.losses.map((l, i) => Math.abs(l - f32.losses[i])));
    expect(diff).toBeLessThan(1e-3);
    expect(diff).toBeGreaterThan(0);
  });

  it('is deterministic for a seed and differs across seeds', async () => {
    const a = await run({ seed: 7 });
    const b = await run({ seed: 7 });
    const c = await run({ seed: 8 });
    expect(b.losses).toEqual(a.losses);
    expect(c.losses).not.toEqual(a.losses);
  });

  it('flip augmentation caches both orientations (2× rows) and DTL+ / partial reads train', async () => {
    const r = await run({ augment: 'flip', variant: 'dtl+', kernel: 3, readBlocks: [1, 2, 3], epochs: 6 });
    // Train rows in two orientations (as drawn) + val + test rows, unflipped.
    expect(r.metrics.cache.storedRows).toBeGreaterThan(40 + 8 + 16);
    expect(r.metrics.cache.storedRows).toBeLessThanOrEqual(2 * 40 + 8 + 16);
    expect(r.metrics.cache.computed).toBe(r.metrics.cache.storedRows);
    expect(r.losses.at(-1)!).toBeLessThan(r.losses[0]);
    // 3 read blocks × 512 (rank 8) + fusion 9·32 + head 132
    expect(r.metrics.trainableParams).toBe(3 * 512 + 9 * 32 + 132);
    expect(r.metrics.augment).toBe('flip');
  });

  it('shift augmentation caches up to five views of each training image and learns', async () => {
    const r = await run({ augment: 'shift', epochs: 6 });
    // Train rows in the views drawn (at most 5 each) + val + test rows as they are.
    expect(r.metrics.cache.storedRows).toBeGreaterThan(2 * 40 + 8 + 16);
    expect(r.metrics.cache.storedRows).toBeLessThanOrEqual(5 * 40 + 8 + 16);
    expect(r.losses.at(-1)!).toBeLessThan(r.losses[0]);
    expect(r.metrics.augment).toBe('shift');
    const again = await run({ augment: 'shift', epochs: 6 });
    expect(again.losses).toEqual(r.losses);
  });

  it('stops early after `patience` epochs without improvement and keeps the best weights', async () => {
    // A learning rate too small to change any float32 weight: nothing ever improves on epoch 1.
    const r = await run({ lr: 1e-12, minLr: 0, warmupEpochs: 0, epochs: 10, patience: 2 });
    expect(r.metrics).toMatchObject({ stoppedEarly: true, bestEpoch: 1, epochsRun: 3, epochsPlanned: 10 });
  });

  it('the published weights are the best epoch: its val accuracy reproduces', async () => {
    const r = await trainAdapter({
      backbone,
      dataset: ds,
      hyperparameters: parseHyperparameters({ ...BASE, epochs: 8 }),
      cacheBytes: 1 << 30,
      cachePrecision: 'float32',
    });
    try {
      expect(r.metrics.evaluation.split).toBe('test');
      const test = [...ds.splits.keys()].filter((i) => ds.splits[i] === 3);
      const per = 32 * 32 * 3;
      const px = new Float32Array(test.length * per);
      test.forEach((i, k) => {
        for (let j = 0; j < per; j++) px[k * per + j] = (ds.pixels[i * per + j] / 255 - 0.5) / 0.5;
      });
      const logits = tf.tidy(() => predictLogits(backbone, r.adapter, tf.tensor4d(px, [test.length, 32, 32, 3])));
      const pred = Array.from(tf.tidy(() => tf.argMax(logits, 1)).dataSync());
      logits.dispose();
      const acc = pred.filter((p, k) => p === ds.labelIds[test[k]]).length / test.length;
      expect(acc).toBeCloseTo(r.metrics.evaluation.accuracy, 10);
    } finally {
      r.adapter.dispose();
    }
  });

  it('an abort stops between batches with the signal reason; no tensors leak across runs', async () => {
    const before = tf.memory().numTensors;
    await run({ epochs: 2 });
    await run({ epochs: 2, augment: 'flip' }, { cachePrecision: 'float16', cacheBytes: 0 });
    expect(tf.memory().numTensors).toBe(before);
    const controller = new AbortController();
    const reason = new Error('stop now');
    const p = run({ epochs: 50 }, { signal: controller.signal, onEpoch: (e) => (e.epoch === 2 ? controller.abort(reason) : undefined) });
    await expect(p).rejects.toBe(reason);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses a data set prepared at another size (invalid_dataset)', async () => {
    await expect(run({}, { dataset: { ...ds, imageSize: 16, pixels: ds.pixels.subarray(0, ds.labelIds.length * 16 * 16 * 3) } })).rejects.toMatchObject({
      code: 'invalid_dataset',
      message: 'the data set was prepared at 16×16 but the backbone takes 32×32; upload it again',
    });
  });
});
