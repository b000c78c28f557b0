import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdamW, backboneFeatures, initBackend, loadBackboneFromFiles, type Backbone } from '../../src/model/index.js';
import { embed, linear } from '../../src/model/layers.js';
import { createTrainableVit, patchEmbed, trainableFromBackbone } from '../../src/model/vit-trainable.js';
import { randomPixels, tinyBackbone } from '../helpers/tiny-backbone.js';

/** Max |a − b|; a and b are computed inside a tidy, so whatever they allocate is freed. */
const maxDiff = (a: tf.Tensor | (() => tf.Tensor), b: tf.Tensor | (() => tf.Tensor)) =>
  tf.tidy(() => {
    const x = typeof a === 'function' ? a() : a;
    const y = typeof b === 'function' ? b() : b;
    const m = tf.max(tf.abs(tf.sub(x, y))).dataSync()[0];
    // backboneFeatures returns a kept tensor, which the tidy would not free.
    if (typeof a === 'function') x.dispose();
    if (typeof b === 'function') y.dispose();
    return m;
  });

describe('trainable ViT', () => {
  let backbone: Backbone;
  beforeAll(async () => {
    await initBackend('wasm');
    backbone = tinyBackbone({ width: 16, depth: 2, heads: 2, mlpDim: 32, patchSize: 7, imageSize: 28, seed: 5 });
  });
  afterAll(() => backbone.dispose());

  it('patchEmbed (matMul form) equals the conv form of layers.embed', () => {
    const px = randomPixels(3, backbone.config);
    expect(maxDiff(() => patchEmbed(backbone, px), () => embed(backbone, px))).toBeLessThan(1e-5);
    tf.dispose(px);
  });

  it('a copy of a loaded backbone gives its features, and round-trips through the HF files', () => {
    const before = tf.memory().numTensors;
    const vit = trainableFromBackbone(backbone);
    const px = randomPixels(4, backbone.config);
    const ref = backboneFeatures(backbone, px);
    expect(maxDiff(() => vit.features(px), ref)).toBeLessThan(1e-5);
    const reloaded = loadBackboneFromFiles(vit.toHfFiles());
    expect(maxDiff(() => backboneFeatures(reloaded, px), ref)).toBeLessThan(1e-5);
    reloaded.dispose();
    vit.dispose();
    tf.dispose([px, ref]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('training the copy leaves the frozen backbone untouched', () => {
    const px = randomPixels(4, backbone.config);
    const ref = backboneFeatures(backbone, px);
    const vit = trainableFromBackbone(backbone);
    const head = tf.tidy(() => tf.variable(tf.randomNormal([16, 3], 0, 0.1, 'float32', 1))) as tf.Variable<tf.Rank.R2>;
    const opt = new AdamW({ lr: 1e-2 });
    const vars = [...vit.variables(), head];
    const { value, grads } = tf.variableGrads(() => tf.mean(tf.square(linear(vit.features(px), head))) as tf.Scalar, vars);
    opt.applyGradients(vars.map((v) => ({ variable: v, grad: grads[v.name], decay: v === head || vit.decays(v) })));
    tf.dispose([value, ...Object.values(grads)]);
    expect(maxDiff(() => vit.features(px), ref)).toBeGreaterThan(1e-4);
    expect(maxDiff(() => backboneFeatures(backbone, px), ref)).toBe(0);
    opt.dispose();
    vit.dispose();
    head.dispose();
    tf.dispose([px, ref]);
  });

  it('a fresh ViT is seeded, decays only matrices, and writes the HF config', () => {
    const a = createTrainableVit({ width: 8, depth: 1, heads: 2, mlpDim: 16, patchSize: 4, imageSize: 8 }, 9);
    const b = createTrainableVit({ width: 8, depth: 1, heads: 2, mlpDim: 16, patchSize: 4, imageSize: 8 }, 9);
    expect(maxDiff(a.blocks[0].wq, b.blocks[0].wq)).toBe(0);
    expect(a.decays(a.blocks[0].w1)).toBe(true);
    expect(a.decays(a.blocks[0].b1)).toBe(false);
    expect(a.decays(a.pos)).toBe(false);
    expect(a.decays(a.normG)).toBe(false);
    const files = a.toHfFiles();
    const cfg = JSON.parse(new TextDecoder().decode(files.config));
    expect(cfg).toMatchObject({ model_type: 'vit', hidden_size: 8, num_hidden_layers: 1, intermediate_size: 16, patch_size: 4, image_size: 8, num_channels: 3 });
    expect(a.variables().reduce((s, v) => s + v.size, 0)).toBe(
      4 * 4 * 3 * 8 + 8 + 8 + 5 * 8 + (4 * (8 * 8 + 8) + 2 * 8 * 16 + 16 + 8 + 4 * 8) + 2 * 8,
    );
    a.dispose();
    b.dispose();
  });
});
