import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AdamW,
  createAdapter,
  crossEntropy,
  disposePrefix,
  forwardSuffix,
  initBackend,
  loadAdapter,
  measurePeakBytes,
  runPrefix,
  saveAdapter,
  splitPoint,
  trainStep,
  trainStepFullTape,
  type Adapter,
  type Backbone,
  type PrefixState,
} from '../../src/model/index.js';
import { randomAdapter, randomPixels, tinyBackbone, tinySpec } from '../helpers/tiny-backbone.js';
import { expectAppError, maxAbsDiff } from './expect.js';

function snapshot(b: Backbone): Buffer {
  const all = [b.patchFilter, b.patchBias, b.cls, b.pos, b.normG, b.normB, ...b.blocks.flatMap((w) => Object.values(w) as tf.Tensor[])];
  return Buffer.concat(all.map((t) => Buffer.from((t.dataSync() as Float32Array).buffer)));
}

function lossOf(backbone: Backbone, state: PrefixState, adapter: Adapter, labels: number[]): number {
  const [logits] = forwardSuffix(backbone, state, [{ adapter, rows: labels.map((_, i) => i) }]);
  const loss = crossEntropy(logits, labels);
  const v = loss.dataSync()[0];
  loss.dispose();
  logits.dispose();
  return v;
}

describe('training', () => {
  let backbone: Backbone;
  beforeAll(async () => {
    await initBackend('wasm');
    backbone = tinyBackbone({ width: 8, depth: 3, heads: 2, mlpDim: 16, patchSize: 4, imageSize: 8, seed: 4 });
  });
  afterAll(() => backbone.dispose());

  it('CSN and head gradients agree with central finite differences', () => {
    // A smooth θ (β = 2) keeps finite differences honest in float32.
    const spec = tinySpec({ beta: 2, loraBeforeBlocks: [0, 1, 2], addAfterBlocks: [1, 2], fusionKernel: 3 });
    const adapter = randomAdapter(backbone.config, spec, 6, 0.5);
    const pixels = randomPixels(4, backbone.config, 2);
    const labels = [0, 1, 2, 1];
    const state = runPrefix(backbone, pixels, splitPoint(spec, backbone.config.depth));
    const vars = adapter.trainableVariables();
    const { value, grads } = tf.variableGrads(() => {
      const [logits] = forwardSuffix(backbone, state, [{ adapter, rows: [0, 1, 2, 3] }]);
      const loss = crossEntropy(logits, labels);
      logits.dispose();
      return loss;
    }, vars);
    value.dispose();
    const eps = 1e-2;
    let checked = 0;
    for (const v of vars) {
      const analytic = grads[v.name].dataSync();
      const base = Float32Array.from(v.dataSync());
      for (const idx of [0, Math.floor(v.size / 2), v.size - 1]) {
        const at = (delta: number) => {
          const data = Float32Array.from(base);
          data[idx] += delta;
          tf.tidy(() => v.assign(tf.tensor(data, v.shape)));
          return lossOf(backbone, state, adapter, labels);
        };
        const numeric = (at(eps) - at(-eps)) / (2 * eps);
        tf.tidy(() => v.assign(tf.tensor(base, v.shape)));
        const a = analytic[idx];
        expect(Math.abs(numeric - a), `${v.name}[${idx}]: numeric ${numeric}, analytic ${a}`).toBeLessThanOrEqual(2e-2 * Math.max(Math.abs(numeric), Math.abs(a)) + 3e-4);
        checked++;
      }
    }
    // Some gradients must be non-trivial for the check to mean anything.
    const norms = vars.map((v) => tf.tidy(() => tf.norm(grads[v.name]).dataSync()[0]));
    expect(norms.every((n) => n > 1e-4)).toBe(true);
    expect(checked).toBe(3 * vars.length);
    for (const g of Object.values(grads)) g.dispose();
    disposePrefix(state);
    pixels.dispose();
    adapter.dispose();
  });

  it('a few steps on a fixed batch lower the loss; the backbone stays bit-identical; nothing leaks', () => {
    const frozen = snapshot(backbone);
    const spec = tinySpec({ loraBeforeBlocks: [0, 1, 2], addAfterBlocks: [1, 2], fusionKernel: 3, labels: ['a', 'b', 'c', 'd'] });
    const adapter = createAdapter(backbone.config, spec, { seed: 2 });
    const optimizer = new AdamW({ lr: 5e-2 });
    const pixels = randomPixels(8, backbone.config, 5);
    const labels = Int32Array.from([0, 1, 2, 3, 3, 2, 1, 0]);
    const state = runPrefix(backbone, pixels, splitPoint(spec, backbone.config.depth));
    const losses = [trainStep({ backbone, adapter, optimizer, state, labels }).loss];
    const tensorsAfterFirst = tf.memory().numTensors;
    for (let i = 0; i < 11; i++) losses.push(trainStep({ backbone, adapter, optimizer, state, labels }).loss);
    expect(tf.memory().numTensors).toBe(tensorsAfterFirst);
    expect(losses[0]).toBeCloseTo(Math.log(4), 1);
    losses.slice(1).forEach((l, i) => expect(l).toBeLessThan(losses[i]));
    expect(losses.at(-1)!).toBeLessThan(losses[0] * 0.6);
    expect(optimizer.step).toBe(12);
    // B moved away from 0: the CSN is learning, not just the head.
    expect(tf.tidy(() => tf.max(tf.abs(adapter.reads.get(1)!.b)).dataSync()[0])).toBeGreaterThan(1e-3);
    expect(snapshot(backbone).equals(frozen)).toBe(true);
    const before = tf.memory().numTensors;
    optimizer.dispose();
    // The moments live on the host (Float32Arrays), so the optimizer holds no tensor at all.
    expect(tf.memory().numTensors).toBe(before);
    disposePrefix(state);
    pixels.dispose();
    adapter.dispose();
  });

  it('the prefix-outside step and the full-tape step compute the same update', () => {
    const spec = tinySpec({ loraBeforeBlocks: [0, 1, 2], addAfterBlocks: [2], fusionKernel: 0 });
    const original = randomAdapter(backbone.config, spec, 12, 0.3);
    const bytes = saveAdapter(original);
    original.dispose();
    const a = loadAdapter(bytes, backbone.config, { trainable: true }).adapter;
    const b = loadAdapter(bytes, backbone.config, { trainable: true }).adapter;
    const [oa, ob] = [new AdamW({ lr: 1e-2 }), new AdamW({ lr: 1e-2 })];
    const pixels = randomPixels(4, backbone.config, 9);
    const labels = [2, 1, 0, 0];
    const state = runPrefix(backbone, pixels, splitPoint(spec, backbone.config.depth));
    for (let i = 0; i < 2; i++) {
      const la = trainStep({ backbone, adapter: a, optimizer: oa, state, labels }).loss;
      const lb = trainStepFullTape({ backbone, adapter: b, optimizer: ob, pixels, labels });
      expect(Math.abs(la - lb)).toBeLessThan(1e-5);
    }
    const va = a.trainableVariables();
    const vb = b.trainableVariables();
    va.forEach((v, i) => expect(maxAbsDiff(v.dataSync(), vb[i].dataSync())).toBeLessThan(1e-5));
    disposePrefix(state);
    pixels.dispose();
    for (const x of [a, b, oa, ob]) x.dispose();
  });

  it.each([
    ['DTL+, all reads, two additions', tinySpec({ loraBeforeBlocks: [0, 1, 2], addAfterBlocks: [1, 2], fusionKernel: 3 })],
    ['a read after the last addition, a block without a read', tinySpec({ loraBeforeBlocks: [0, 2], addAfterBlocks: [0, 1], fusionKernel: 2 })],
    ['reads only inside the prefix', tinySpec({ loraBeforeBlocks: [0], addAfterBlocks: [1, 2] })],
  ])('block-wise recomputation (all blocks, or a taped tail of 1 or all blocks) gives the taped step’s loss, predictions and update: %s', (_, spec) => {
    const original = randomAdapter(backbone.config, spec, 31, 0.3);
    const bytes = saveAdapter(original);
    original.dispose();
    const pixels = randomPixels(3, backbone.config, 13);
    const labels = [1, 0, 2];
    const state = runPrefix(backbone, pixels, splitPoint(spec, backbone.config.depth));
    const variants: Array<Pick<Parameters<typeof trainStep>[0], 'tapeBlocks'>> = [{}, { tapeBlocks: 0 }, { tapeBlocks: 1 }, { tapeBlocks: 5 }];
    const runs = variants.map((variant) => {
      const adapter = loadAdapter(bytes, backbone.config, { trainable: true }).adapter;
      const optimizer = new AdamW({ lr: 1e-2 });
      const steps = [0, 1].map(() => trainStep({ backbone, adapter, optimizer, state, labels, ...variant }));
      const settled = tf.memory().numTensors;
      const weights = adapter.trainableVariables().map((v) => Float32Array.from(v.dataSync() as Float32Array));
      trainStep({ backbone, adapter, optimizer, state, labels, ...variant });
      expect(tf.memory().numTensors, JSON.stringify(variant)).toBe(settled);
      adapter.dispose();
      optimizer.dispose();
      return { variant, steps, weights };
    });
    const [taped, ...others] = runs;
    for (const r of others) {
      r.steps.forEach((st, i) => {
        expect(Math.abs(st.loss - taped.steps[i].loss), JSON.stringify(r.variant)).toBeLessThan(1e-5);
        expect(Array.from(st.predicted)).toEqual(Array.from(taped.steps[i].predicted));
      });
      r.weights.forEach((w, i) => expect(maxAbsDiff(w, taped.weights[i]), `${JSON.stringify(r.variant)} variable ${i}`).toBeLessThan(1e-5));
    }
    expect(taped.steps[0].predicted.length).toBe(3);
    disposePrefix(state);
    pixels.dispose();
  });

  it('AdamW follows torch.optim.AdamW: decoupled decay, none on biases', () => {
    const w = tf.variable(tf.tensor1d([1, -2]));
    const bias = tf.variable(tf.tensor1d([0.5]));
    const opt = new AdamW({ lr: 0.1, weightDecay: 0.05 });
    const g1 = tf.tensor1d([0.3, -0.4]);
    const g2 = tf.tensor1d([0.2]);
    opt.applyGradients([
      { variable: w, grad: g1, decay: true },
      { variable: bias, grad: g2, decay: false },
    ]);
    // Step 1: m̂ = g, v̂ = g², so the Adam step is lr·g/(|g| + eps) = ±lr (up to eps).
    const expectW = [1 * (1 - 0.1 * 0.05) - 0.1 * (0.3 / (0.3 + 1e-8)), -2 * (1 - 0.1 * 0.05) + 0.1 * (0.4 / (0.4 + 1e-8))];
    expect(maxAbsDiff(w.dataSync(), expectW)).toBeLessThan(1e-6);
    expect(maxAbsDiff(bias.dataSync(), [0.5 - 0.1])).toBeLessThan(1e-6);
    opt.lr = 0.01;
    opt.applyGradients([{ variable: w, grad: g1, decay: true }]);
    // Step 2 with the same gradient: m̂ = g, v̂ = g² again → the step is lr.
    expect(maxAbsDiff(w.dataSync(), [expectW[0] * (1 - 0.01 * 0.05) - 0.01, expectW[1] * (1 - 0.01 * 0.05) + 0.01])).toBeLessThan(1e-6);
    opt.dispose();
    for (const t of [w, bias, g1, g2]) t.dispose();
  });

  it('AdamW matches the torch.optim.AdamW recurrence over steps with changing gradients and an outside assign', () => {
    // The reference is PyTorch's documented algorithm, element by element in double precision.
    const lr = 0.03;
    const [b1, b2, eps, wd] = [0.9, 0.999, 1e-8, 0.05];
    const grads = [[0.3, -0.4, 1e-3], [-0.1, 0.25, 2], [0.05, 0, -0.7], [1.5, -0.2, 0.01]];
    const ref = { p: [1, -2, 0.25], m: [0, 0, 0], v: [0, 0, 0] };
    const w = tf.variable(tf.tensor1d(ref.p));
    const opt = new AdamW({ lr, weightDecay: wd });
    grads.forEach((g, t) => {
      if (t === 2) {
        // Restoring a snapshot between steps (the trainer's best epoch): the next step starts from it.
        ref.p = [0.9, -1.8, 0.2];
        tf.tidy(() => w.assign(tf.tensor1d(ref.p)));
      }
      const step = t + 1;
      ref.p = ref.p.map((p, i) => {
        ref.m[i] = b1 * ref.m[i] + (1 - b1) * g[i];
        ref.v[i] = b2 * ref.v[i] + (1 - b2) * g[i] * g[i];
        const mHat = ref.m[i] / (1 - b1 ** step);
        const vHat = ref.v[i] / (1 - b2 ** step);
        return p * (1 - lr * wd) - (lr * mHat) / (Math.sqrt(vHat) + eps);
      });
      const grad = tf.tensor1d(g);
      opt.applyGradients([{ variable: w, grad, decay: true }]);
      grad.dispose();
      expect(maxAbsDiff(w.dataSync(), ref.p)).toBeLessThan(1e-6);
    });
    expect(opt.step).toBe(4);
    opt.dispose();
    w.dispose();
  });

  it('refuses bad labels and non-trainable adapters without leaking', async () => {
    const spec = tinySpec();
    const trainable = createAdapter(backbone.config, spec, { seed: 1 });
    const frozen = loadAdapter(saveAdapter(trainable), backbone.config).adapter;
    const opt = new AdamW();
    const pixels = randomPixels(2, backbone.config);
    const state = runPrefix(backbone, pixels, splitPoint(spec, backbone.config.depth));
    await expectAppError(() => trainStep({ backbone, adapter: trainable, optimizer: opt, state, labels: [0, 3] }), 'internal', /label index 3/);
    await expectAppError(() => trainStep({ backbone, adapter: trainable, optimizer: opt, state, labels: [0] }), 'internal', /1 labels for a batch of 2/);
    await expectAppError(() => trainStep({ backbone, adapter: frozen, optimizer: opt, state, labels: [0, 1] }), 'internal', /not trainable/);
    disposePrefix(state);
    pixels.dispose();
    for (const x of [trainable, frozen, opt]) x.dispose();
  });

  it('peak tensor memory: prefix outside the tape is well below the tape over all blocks', async () => {
    const big = tinyBackbone({ width: 32, depth: 12, heads: 4, mlpDim: 128, patchSize: 4, imageSize: 32, seed: 8 });
    // The authors' ViT-B/16 recipe: read all 12 blocks, add after 6..11 (blocks 0..6 shared), DTL+ k = 3.
    const spec = tinySpec({ loraBeforeBlocks: [...Array(12).keys()], addAfterBlocks: [6, 7, 8, 9, 10, 11], fusionKernel: 3 });
    const adapter = createAdapter(big.config, spec, { seed: 3 });
    const optimizer = new AdamW();
    const pixels = randomPixels(4, big.config, 1);
    const labels = [0, 1, 2, 0];
    const split = splitPoint(spec, big.config.depth);
    const state = runPrefix(big, pixels, split);
    trainStep({ backbone: big, adapter, optimizer, state, labels }); // moments allocated before measuring
    const cached = await measurePeakBytes(() => trainStep({ backbone: big, adapter, optimizer, state, labels }).loss);
    disposePrefix(state);
    const withPrefix = await measurePeakBytes(() => {
      const s = runPrefix(big, pixels, split);
      const loss = trainStep({ backbone: big, adapter, optimizer, state: s, labels }).loss;
      disposePrefix(s);
      return loss;
    });
    const fullTape = await measurePeakBytes(() => trainStepFullTape({ backbone: big, adapter, optimizer, pixels, labels }));
    const recomputed = await measurePeakBytes(() => {
      const s = runPrefix(big, pixels, split);
      const loss = trainStep({ backbone: big, adapter, optimizer, state: s, labels, tapeBlocks: 0 }).loss;
      disposePrefix(s);
      return loss;
    });
    const tail2 = await measurePeakBytes(() => {
      const s = runPrefix(big, pixels, split);
      const loss = trainStep({ backbone: big, adapter, optimizer, state: s, labels, tapeBlocks: 2 }).loss;
      disposePrefix(s);
      return loss;
    });
    const kib = (b: number) => `${(b / 1024).toFixed(0)} KiB`;
    console.log(
      `peak tensor memory of one training step (ViT d=32, 12 blocks, 65 tokens, batch 4, split ${split}): ` +
        `prefix cached ${kib(cached.peakBytes)}, prefix outside the tape ${kib(withPrefix.peakBytes)}, ` +
        `tape over all blocks ${kib(fullTape.peakBytes)}; prefix outside + block-wise recomputation ${kib(recomputed.peakBytes)}, ` +
        `with the last 2 blocks taped ${kib(tail2.peakBytes)}`,
    );
    expect(recomputed.peakBytes).toBeLessThan(tail2.peakBytes);
    expect(tail2.peakBytes).toBeLessThan(withPrefix.peakBytes);
    expect(recomputed.peakBytes).toBeLessThan(0.5 * withPrefix.peakBytes);
    expect(withPrefix.result).toBeGreaterThan(0);
    expect(cached.peakBytes).toBeLessThan(withPrefix.peakBytes);
    expect(withPrefix.peakBytes).toBeLessThan(0.75 * fullTape.peakBytes);
    pixels.dispose();
    optimizer.dispose();
    adapter.dispose();
    big.dispose();
  });
});
