/**
 * Training on a Swin backbone: the prefix store lays each slot out in its block's stage shape and
 * serves what runPrefix computes; the Swin defaults (reads in the stages that add, swinAutoRank)
 * resolve as documented, on Swin-B too; `trainAdapter` learns on a tiny Swin without leaking
 * tensors, and its adapter round-trips through the adapter file.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blockShape, disposePrefix, initBackend, loadAdapter, predictLogits, runPrefix, saveAdapter, type Backbone } from '../../src/model/index.js';
import { hfSwinConfig } from '../../src/model/swin-config.js';
import { adapterSpecFor, parseHyperparameters, resolveBlocks, swinAutoRank } from '../../src/train/hyperparameters.js';
import type { PreparedDataset } from '../../src/train/ingest/index.js';
import { TrainingPrefixStore } from '../../src/train/prefix-store.js';
import { trainAdapter } from '../../src/train/trainer.js';
import { rng } from '../helpers/tiny-backbone.js';
import { tinySwin, type TinySwinOptions } from '../helpers/tiny-swin.js';
import { shapesPrepared } from './helpers.js';

/** 32 px, patch 4: stages of 8×8 / 4×4 / 2×2 tokens, 16 / 32 / 64 wide, 2 blocks each. */
const TINY_SWIN: TinySwinOptions = { embedDim: 16, depths: [2, 2, 2], heads: [1, 2, 4], windowSize: 4, patchSize: 4, imageSize: 32, seed: 7 };

let backbone: Backbone;
let ds: PreparedDataset;

beforeAll(async () => {
  await initBackend('wasm');
  backbone = tinySwin(TINY_SWIN);
  ds = await shapesPrepared({ classes: 4, perClass: 16, seed: 5, test: 4 });
});
afterAll(() => backbone.dispose());

describe('Swin defaults', () => {
  it('reads every block of the stages that add; auto rank fits the narrowest read; explicit ranks are checked per read block', () => {
    const cfg = backbone.config;
    // 6 blocks: additions after 3..5 (stages 1, 2) → reads 2..5; narrowest read width 32 → rank 8.
    expect(resolveBlocks(parseHyperparameters({}), cfg)).toEqual({ loraBeforeBlocks: [2, 3, 4, 5], addAfterBlocks: [3, 4, 5], fusionKernel: 0 });
    expect(adapterSpecFor(parseHyperparameters({}), cfg, ['a', 'b']).rank).toBe(swinAutoRank(32));
    expect(swinAutoRank(32)).toBe(8);
    // Explicit reads in stage 0 (16 wide): the auto rank follows them, an explicit 17 is refused.
    expect(adapterSpecFor(parseHyperparameters({ readBlocks: [0, 3] }), cfg, ['a']).rank).toBe(4);
    expect(() => resolveBlocks(parseHyperparameters({ readBlocks: [0, 3], rank: 17 }), cfg)).toThrow(/rank 17 exceeds read block 0's width 16/);
    expect(resolveBlocks(parseHyperparameters({ readBlocks: [2, 3], rank: 32 }), cfg).loraBeforeBlocks).toEqual([2, 3]);
  });

  it('on Swin-B: the authors’ reads 4..23 and rank 4', () => {
    const swinB = hfSwinConfig({ model_type: 'swin', image_size: 224, patch_size: 4, embed_dim: 128, depths: [2, 2, 18, 2], num_heads: [4, 8, 16, 32], window_size: 7 });
    const spec = adapterSpecFor(parseHyperparameters({}), swinB, ['a']);
    expect(spec.loraBeforeBlocks).toEqual(Array.from({ length: 20 }, (_, i) => 4 + i));
    expect(spec.addAfterBlocks).toEqual(Array.from({ length: 12 }, (_, i) => 12 + i));
    expect(spec.rank).toBe(4);
  });
});

describe('TrainingPrefixStore on a Swin', () => {
  it('stores each slot in its stage shape and serves what runPrefix computes', async () => {
    const r = rng(3);
    const images = Array.from({ length: 3 }, () => Float32Array.from({ length: 32 * 32 * 3 }, () => r.uniform() * 2 - 1));
    // Reads in stage 0 (block 0) and stage 1 (blocks 2, 3); split 4: x is block 3's output.
    const store = new TrainingPrefixStore({ backbone, split: 4, readBlocks: [0, 2, 3, 5], budgetBytes: 1 << 30, precision: 'float32', pixels: (k) => images[k] });
    const floats = [0, 2, 3, 3].map((b) => blockShape(backbone.config, b)).reduce((a, [t, w]) => a + t * w, 0);
    expect(floats).toBe(64 * 16 + 3 * 16 * 32);
    expect(store.rowFloats).toBe(floats);
    const before = tf.memory().numTensors;
    const keys = [2, 0, 2];
    for (let pass = 0; pass < 2; pass++) {
      const got = await store.batch(keys);
      const pixels = tf.tensor4d(Float32Array.from(keys.flatMap((k) => [...images[k]])), [3, 32, 32, 3]);
      const want = runPrefix(backbone, pixels, 4);
      expect(got.inputs.map((t) => t.shape)).toEqual([[3, 64, 16], [3, 0, 16], [3, 16, 32], [3, 16, 32]]);
      expect(got.x.shape).toEqual([3, 16, 32]);
      for (const b of [0, 2, 3]) expect(got.inputs[b].dataSync()).toEqual(want.inputs[b].dataSync());
      expect(got.x.dataSync()).toEqual(want.x.dataSync());
      disposePrefix(got);
      disposePrefix(want);
      pixels.dispose();
    }
    expect(store.stats()).toMatchObject({ computed: 2, hits: 3, storedRows: 2, storedBytes: 2 * floats * 4 });
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('trainAdapter on a Swin', () => {
  it('learns the shapes (loss falls, test accuracy well above chance) and the adapter file predicts the same', async () => {
    const before = tf.memory().numTensors;
    const h = parseHyperparameters({ epochs: 8, warmupEpochs: 1, batchSize: 16, lr: 3e-2, variant: 'dtl', seed: 3, patience: 0 });
    const r = await trainAdapter({ backbone, dataset: ds, hyperparameters: h, cacheBytes: 1 << 30, cachePrecision: 'float16' });
    try {
      const losses = r.metrics.lossCurve.map((p) => p.trainLoss);
      expect(losses.at(-1)!).toBeLessThan(losses[0] * 0.3);
      expect(r.metrics.evaluation.accuracy).toBeGreaterThanOrEqual(0.5); // 4 classes: chance 0.25
      expect(r.adapter.spec).toMatchObject({ rank: 8, loraBeforeBlocks: [2, 3, 4, 5], addAfterBlocks: [3, 4, 5] });
      // Reads 2, 3 (32 wide) and 4, 5 (64 wide) at rank 8, head 64·4 + 4.
      expect(r.metrics.trainableParams).toBe(2 * 2 * 32 * 8 + 2 * 2 * 64 * 8 + 64 * 4 + 4);
      const bytes = saveAdapter(r.adapter);
      const { adapter } = loadAdapter(bytes, backbone.config);
      const pixels = tf.tensor4d(new Float32Array(2 * 32 * 32 * 3).fill(0.1), [2, 32, 32, 3]);
      const a = predictLogits(backbone, r.adapter, pixels);
      const b = predictLogits(backbone, adapter, pixels);
      expect(Array.from(b.dataSync())).toEqual(Array.from(a.dataSync()));
      tf.dispose([a, b, pixels]);
      adapter.dispose();
    } finally {
      r.adapter.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
  });
});
