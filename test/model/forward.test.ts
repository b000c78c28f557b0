import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  backboneFeatures,
  createAdapter,
  depthwiseSame,
  disposePrefix,
  forwardSuffix,
  gatherPrefix,
  initBackend,
  predictLogits,
  runPrefix,
  splitPoint,
  suffixFeatures,
  type Backbone,
} from '../../src/model/index.js';
import { DENSE_FUSION_MAX_PATCHES } from '../../src/model/layers.js';
import { randomAdapter, randomPixels, tinyBackbone, tinySpec } from '../helpers/tiny-backbone.js';
import { expectAppError, maxAbsDiff } from './expect.js';

describe('forward pass', () => {
  let backbone: Backbone;
  beforeAll(async () => {
    await initBackend('wasm');
    backbone = tinyBackbone({ width: 8, depth: 4, heads: 2, mlpDim: 16, patchSize: 2, imageSize: 8, seed: 3 });
  });
  afterAll(() => backbone.dispose());

  it('splitPoint is the first addition + 1, or the depth without additions', () => {
    expect(splitPoint({ addAfterBlocks: [6, 7, 8, 9, 10, 11] }, 12)).toBe(7);
    expect(splitPoint({ addAfterBlocks: [3, 1] }, 12)).toBe(2);
    expect(splitPoint({ addAfterBlocks: [0] }, 4)).toBe(1);
    expect(splitPoint({ addAfterBlocks: [] }, 4)).toBe(4);
  });

  // 5×5 runs as matrices (depthwiseDense), 9×9 (above DENSE_FUSION_MAX_PATCHES) as shifted slices.
  it.each([
    [1, 5],
    [2, 5],
    [3, 5],
    [4, 5],
    [5, 5],
    [3, 9],
    [4, 9],
  ])("DTL+ fusion (k = %i, grid side %i) equals tf.depthwiseConv2d with PyTorch 'same' padding", (k, g) => {
    expect(g * g > DENSE_FUSION_MAX_PATCHES).toBe(g === 9);
    const [n, d] = [2, 3];
    const x = tf.randomNormal([n, g, g, d], 0, 1, 'float32', k) as tf.Tensor4D;
    const taps = tf.randomNormal([k * k, d], 0, 1, 'float32', 10 + k) as tf.Tensor2D;
    const before = (k - 1) >> 1;
    const after = k - 1 - before;
    const ours = depthwiseSame(x, taps, k);
    const reference = tf.tidy(() =>
      tf.depthwiseConv2d(tf.pad(x, [[0, 0], [before, after], [before, after], [0, 0]]), tf.reshape(taps, [k, k, d, 1]) as tf.Tensor4D, 1, 'valid'),
    );
    expect(ours.shape).toEqual([n, g, g, d]);
    expect(maxAbsDiff(ours.dataSync(), reference.dataSync())).toBeLessThan(1e-5);
    for (const t of [x, taps, ours, reference]) t.dispose();
  });

  it.each([
    ['DTL, additions from block 1', tinySpec({ loraBeforeBlocks: [0, 1, 2, 3], addAfterBlocks: [1, 2, 3] })],
    ['DTL+, additions from block 0', tinySpec({ loraBeforeBlocks: [0, 2, 3], addAfterBlocks: [0, 3], fusionKernel: 3 })],
    ['DTL+ k=4, one late addition', tinySpec({ loraBeforeBlocks: [2, 3], addAfterBlocks: [3], fusionKernel: 4 })],
  ])('an untrained adapter (B = 0) gives the head exactly the backbone pooled features: %s', (_, spec) => {
    const pixels = randomPixels(3, backbone.config, 4);
    const adapter = createAdapter(backbone.config, spec, { seed: 8 });
    const reference = backboneFeatures(backbone, pixels);
    const state = runPrefix(backbone, pixels, splitPoint(spec, backbone.config.depth));
    const [features] = suffixFeatures(backbone, state, [{ adapter, rows: [0, 1, 2] }]);
    expect(Array.from(features.dataSync())).toEqual(Array.from(reference.dataSync()));
    const logits = predictLogits(backbone, adapter, pixels);
    const viaHead = tf.tidy(() => tf.add(tf.matMul(reference, adapter.headW), adapter.headB));
    expect(Array.from(logits.dataSync())).toEqual(Array.from(viaHead.dataSync()));
    // …while a trained one does change them.
    const trained = randomAdapter(backbone.config, spec, 9);
    const [changed] = suffixFeatures(backbone, state, [{ adapter: trained, rows: [0, 1, 2] }]);
    expect(maxAbsDiff(changed.dataSync(), reference.dataSync())).toBeGreaterThan(1e-3);
    disposePrefix(state);
    for (const t of [pixels, reference, features, logits, viaHead, changed]) t.dispose();
    adapter.dispose();
    trained.dispose();
  });

  it('keeps the prefix state to block inputs and one output: split + 1 tensors', () => {
    const pixels = randomPixels(2, backbone.config);
    const before = tf.memory().numTensors;
    const state = runPrefix(backbone, pixels, 3);
    expect(state.inputs).toHaveLength(3);
    expect(state.x.shape).toEqual([2, backbone.config.tokens, backbone.config.width]);
    expect(tf.memory().numTensors).toBe(before + 4);
    disposePrefix(state);
    expect(tf.memory().numTensors).toBe(before);
    pixels.dispose();
  });

  it('repeated predict / prefix / suffix calls do not grow the tensor count', () => {
    const pixels = randomPixels(3, backbone.config);
    const a = randomAdapter(backbone.config, tinySpec({ fusionKernel: 3 }), 1);
    const b = randomAdapter(backbone.config, tinySpec({ loraBeforeBlocks: [0, 3], addAfterBlocks: [3], labels: ['u', 'v'] }), 2);
    const once = () => {
      predictLogits(backbone, a, pixels).dispose();
      const state = runPrefix(backbone, pixels, 2);
      const fan = gatherPrefix(state, [0, 0, 1, 2]);
      for (const t of forwardSuffix(backbone, fan, [{ adapter: a, rows: [0, 2] }, { adapter: b, rows: [1, 3, 0] }])) t.dispose();
      disposePrefix(fan);
      disposePrefix(state);
    };
    once();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) once();
    expect(tf.memory().numTensors).toBe(before);
    pixels.dispose();
    a.dispose();
    b.dispose();
  });

  it('a mixed batch costs a fixed number of ops per block: each extra adapter adds a few ops per batch, not ops per block', async () => {
    const pixels = randomPixels(8, backbone.config);
    const specs = [tinySpec(), tinySpec({ fusionKernel: 3, rank: 1 }), tinySpec({ loraBeforeBlocks: [0, 3], addAfterBlocks: [2, 3] })];
    const adapters = Array.from({ length: 8 }, (_, i) => randomAdapter(backbone.config, specs[i % 3], 40 + i));
    const state = runPrefix(backbone, pixels, 1);
    const kernels = async (g: number) => {
      const groups = adapters.slice(0, g).map((adapter, i) => ({ adapter, rows: [i] }));
      const info = await tf.profile(() => {
        for (const t of forwardSuffix(backbone, state, groups)) t.dispose();
      });
      return info.kernels.length;
    };
    const [three, eight] = [await kernels(3), await kernels(8)];
    // Five more adapters: each one's weight stacking, rank padding and head slice, a handful of
    // ops per batch — the per-group loop costs ≈ 10 ops per adapter per block (> 150 here).
    expect(eight - three).toBeLessThan(5 * 8);
    disposePrefix(state);
    pixels.dispose();
    for (const a of adapters) a.dispose();
  });

  it('refuses misuse with an AppError and no leak', async () => {
    const pixels = randomPixels(2, backbone.config);
    const early = createAdapter(backbone.config, tinySpec({ addAfterBlocks: [0, 1] }), { seed: 1 });
    const other = tinyBackbone({ width: 12, heads: 2, depth: 4, patchSize: 2, imageSize: 8 });
    const foreign = createAdapter(other.config, tinySpec(), { seed: 1 });
    const state = runPrefix(backbone, pixels, 2);
    await expectAppError(() => forwardSuffix(backbone, state, [{ adapter: early, rows: [0] }]), 'internal', /inside the prefix/);
    await expectAppError(() => forwardSuffix(backbone, state, [{ adapter: foreign, rows: [0] }]), 'adapter_backbone_mismatch');
    const ok = createAdapter(backbone.config, tinySpec({ addAfterBlocks: [2] }), { seed: 1 });
    await expectAppError(() => forwardSuffix(backbone, state, [{ adapter: ok, rows: [0, 5] }]), 'internal', /row 5/);
    await expectAppError(() => forwardSuffix(backbone, state, [{ adapter: ok, rows: [] }]), 'internal', /no rows/);
    const wrong = tf.zeros([1, 4, 4, 3]) as tf.Tensor4D;
    await expectAppError(() => predictLogits(backbone, ok, wrong), 'bad_request', /pixels must be/);
    ok.dispose();
    await expectAppError(() => forwardSuffix(backbone, state, [{ adapter: ok, rows: [0] }]), 'internal', /disposed/);
    disposePrefix(state);
    for (const t of [pixels, wrong]) t.dispose();
    early.dispose();
    foreign.dispose();
    other.dispose();
  });
});
