/**
 * The lean back-propagation (src/model/kernels/lean-gradients.ts) against tfjs's stock one: the same numbers
 * bit for bit, a lower peak, nothing leaked, and the cases it hands back to the stock engine.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  crossEntropy,
  disposePrefix,
  forwardSuffix,
  initBackend,
  installLeanGradients,
  leanGradientsInstalled,
  measurePeakBytes,
  runPrefix,
  splitPoint,
  trainStepFullTape,
  AdamW,
  uninstallLeanGradients,
  type Backbone,
} from '../../src/model/index.js';
import { randomAdapter, randomPixels, tinyBackbone, tinySpec } from '../helpers/tiny-backbone.js';

describe('lean gradients', () => {
  let backbone: Backbone;
  beforeAll(async () => {
    await initBackend('wasm');
    backbone = tinyBackbone({ width: 16, depth: 4, heads: 2, mlpDim: 32, patchSize: 4, imageSize: 8, seed: 2 });
  });
  afterAll(() => {
    installLeanGradients();
    backbone.dispose();
  });

  /** Loss and gradients of one DTL+ adapter's suffix, as flat arrays. */
  function gradsOf(): { loss: number; grads: number[][] } {
    const spec = tinySpec({ loraBeforeBlocks: [0, 1, 2, 3], addAfterBlocks: [1, 2, 3], fusionKernel: 3 });
    const adapter = randomAdapter(backbone.config, spec, 4, 0.4);
    const pixels = randomPixels(3, backbone.config, 9);
    const state = runPrefix(backbone, pixels, splitPoint(spec, backbone.config.depth));
    try {
      const vars = adapter.trainableVariables();
      const { value, grads } = tf.variableGrads(() => {
        const [logits] = forwardSuffix(backbone, state, [{ adapter, rows: [0, 1, 2] }]);
        const loss = crossEntropy(logits, [0, 2, 1]);
        logits.dispose();
        return loss;
      }, vars);
      const out = { loss: value.dataSync()[0], grads: vars.map((v) => Array.from(grads[v.name].dataSync())) };
      value.dispose();
      for (const g of Object.values(grads)) g.dispose();
      return out;
    } finally {
      disposePrefix(state);
      pixels.dispose();
      adapter.dispose();
    }
  }

  it('is installed by backend start-up and gives the stock gradients bit for bit, leaking nothing', () => {
    expect(leanGradientsInstalled()).toBe(true);
    const tensors = tf.memory().numTensors;
    const lean = gradsOf();
    expect(tf.memory().numTensors).toBe(tensors);
    uninstallLeanGradients();
    expect(leanGradientsInstalled()).toBe(false);
    const stock = gradsOf();
    installLeanGradients();
    expect(lean.loss).toBe(stock.loss);
    expect(lean.grads).toEqual(stock.grads);
    expect(lean.grads.some((g) => g.some((v) => v !== 0))).toBe(true);
  });

  it('leaves a caller-supplied dy alone, handles a gradient passed straight through, and second-order gradients still work', () => {
    const x = tf.tensor1d([1, 2, 3]);
    const dy = tf.tensor1d([1, 10, 100]);
    // Identity-like ops pass dy through unchanged: the same tensor ends up as two gradients.
    const [g] = tf.grads((a: tf.Tensor) => tf.add(tf.reshape(a, [3]), tf.mul(a, 2)))([x], dy);
    expect(Array.from(g.dataSync())).toEqual([3, 30, 300]);
    expect(dy.isDisposed).toBe(false);
    // d²/dx² of x³ = 6x (nested gradient calls go to the stock engine).
    const second = tf.grad((a: tf.Tensor) => tf.grad((b: tf.Tensor) => tf.pow(b, 3))(a))(x);
    expect(Array.from(second.dataSync())).toEqual([6, 12, 18]);
    for (const t of [x, dy, g, second]) t.dispose();
  });

  it('frees gradients and saved activations as it goes: a lower peak than the stock engine', async () => {
    const big = tinyBackbone({ width: 32, depth: 8, heads: 4, mlpDim: 128, patchSize: 4, imageSize: 16, seed: 3 });
    const spec = tinySpec({ loraBeforeBlocks: [...Array(8).keys()], addAfterBlocks: [4, 5, 6, 7] });
    const adapter = randomAdapter(big.config, spec, 5);
    const optimizer = new AdamW();
    const pixels = randomPixels(4, big.config, 3);
    const step = () => trainStepFullTape({ backbone: big, adapter, optimizer, pixels, labels: [0, 1, 2, 0] });
    step(); // optimizer moments exist before measuring
    const lean = await measurePeakBytes(step);
    uninstallLeanGradients();
    const stock = await measurePeakBytes(step);
    installLeanGradients();
    expect(lean.peakBytes).toBeLessThan(0.8 * stock.peakBytes);
    for (const x of [pixels, optimizer, adapter, big]) x.dispose();
  });
});
