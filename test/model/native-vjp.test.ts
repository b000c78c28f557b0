/**
 * The frozen blocks of a training step on onnxruntime (model/native/training-blocks.ts): each
 * block's forward equals vitBlock and its VJP graph equals tfjs's own gradient of vitBlock (the
 * gradient every tfjs training step has used), on a backbone with random weights.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AdamW,
  detachNative,
  initBackend,
  loadAdapter,
  runPrefix,
  disposePrefix,
  saveAdapter,
  splitPoint,
  startBackboneEngine,
  trainStep,
  type Adapter,
  type AdapterSpec,
  type Backbone,
} from '../../src/model/index.js';
import { vitBlock } from '../../src/model/layers.js';
import { initEngine } from '../../src/model/native/engine.js';
import { nativeFrozenBlocks, type FrozenBlocks } from '../../src/model/native/training-blocks.js';
import { randomAdapter, randomPixels, rng, tinyBackbone, tinySpec } from '../helpers/tiny-backbone.js';
import { maxAbsDiff } from './expect.js';

describe('native frozen blocks: forward and VJP against tfjs', () => {
  let backbone: Backbone;
  let blocks: FrozenBlocks;

  beforeAll(async () => {
    await initBackend('wasm');
    backbone = tinyBackbone({ width: 32, depth: 3, heads: 4, mlpDim: 64, imageSize: 16, patchSize: 4, seed: 5 });
    const engine = await initEngine('onnxruntime', { threads: 1, provider: 'cpu' });
    blocks = nativeFrozenBlocks(engine!, backbone)!;
    expect(blocks).toBeDefined();
  });
  afterAll(() => {
    blocks.release();
    backbone.dispose();
  });

  it('dx of every block within 1e-4 of tf.grad (relative to its largest entry), forward within 1e-5', () => {
    const { tokens, width, depth } = backbone.config;
    const n = 3;
    const r = rng(11);
    for (let i = 0; i < depth; i++) {
      const x = Float32Array.from({ length: n * tokens * width }, () => r.normal());
      const dy = Float32Array.from({ length: n * tokens * width }, () => r.normal());
      const [refY, refDx] = tf.tidy(() => {
        const xt = tf.tensor3d(x, [n, tokens, width]);
        const dyt = tf.tensor3d(dy, [n, tokens, width]);
        const y = vitBlock(xt, backbone.blocks[i], backbone.config);
        const g = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(vitBlock(v as tf.Tensor3D, backbone.blocks[i], backbone.config), dyt)))(xt);
        return [y.dataSync(), g.dataSync()];
      });
      const y = blocks.forward(i, x, n);
      const dx = blocks.vjp(i, x, dy, n);
      expect(maxAbsDiff(y, refY as Float32Array)).toBeLessThan(1e-5 * Math.max(1, ...Array.from(refY, Math.abs)));
      const scale = Math.max(...Array.from(refDx, Math.abs));
      expect(scale).toBeGreaterThan(0);
      expect(maxAbsDiff(dx, refDx as Float32Array) / scale).toBeLessThan(1e-4);
    }
  });

  it('runs any batch size with the same graphs and leaves no tfjs tensors', () => {
    const { tokens, width } = backbone.config;
    const before = tf.memory().numTensors;
    for (const n of [1, 5]) {
      const x = new Float32Array(n * tokens * width).fill(0.5);
      expect(blocks.vjp(0, x, x, n)).toHaveLength(n * tokens * width);
    }
    expect(() => blocks.forward(0, new Float32Array(7), 1)).toThrow(/expected 1×/);
    // More rows than one session run takes (2,048 token rows): run in chunks, same answer as tfjs.
    const n = Math.ceil(2048 / tokens) + 9;
    const r = rng(12);
    const x = Float32Array.from({ length: n * tokens * width }, () => r.normal());
    const ref = tf.tidy(() => vitBlock(tf.tensor3d(x, [n, tokens, width]), backbone.blocks[1], backbone.config).dataSync());
    expect(maxAbsDiff(blocks.forward(1, x, n), ref as Float32Array)).toBeLessThan(1e-4);
    const dx = blocks.vjp(1, x, x, n);
    expect(maxAbsDiff(dx.subarray(0, tokens * width), blocks.vjp(1, x.subarray(0, tokens * width), x.subarray(0, tokens * width), 1))).toBeLessThan(1e-5);
    expect(maxAbsDiff(dx.subarray((n - 1) * tokens * width), blocks.vjp(1, x.subarray((n - 1) * tokens * width), x.subarray((n - 1) * tokens * width), 1))).toBeLessThan(1e-5);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('a training step with the frozen blocks on onnxruntime = the tfjs step', () => {
  let backbone: Backbone;
  beforeAll(async () => {
    await initBackend('wasm');
    backbone = tinyBackbone({ width: 16, depth: 4, heads: 2, mlpDim: 32, patchSize: 4, imageSize: 8, seed: 9 });
  });
  afterAll(async () => {
    await detachNative(backbone);
    backbone.dispose();
  });

  const specs: AdapterSpec[] = [
    tinySpec({ loraBeforeBlocks: [0, 1, 2, 3], addAfterBlocks: [2, 3] }),
    tinySpec({ loraBeforeBlocks: [0, 1, 2, 3], addAfterBlocks: [2, 3], fusionKernel: 3 }),
    tinySpec({ loraBeforeBlocks: [0, 3], addAfterBlocks: [1, 3], beta: 5 }),
  ];

  /** Three steps, single and grouped, on the engine given; the adapters' weights after them. */
  async function train(engineName: 'tfjs' | 'onnxruntime', tapeBlocks?: number): Promise<{ losses: number[]; weights: Float32Array[][] }> {
    expect(await startBackboneEngine(backbone, engineName, { threads: 1, provider: 'cpu' })).toBe(engineName);
    const files = specs.map((spec, k) => {
      const a = randomAdapter(backbone.config, spec, 60 + k, 0.3);
      const bytes = saveAdapter(a);
      a.dispose();
      return bytes;
    });
    const adapters: Adapter[] = files.map((b) => loadAdapter(b, backbone.config, { trainable: true }).adapter);
    const opts = adapters.map((_, k) => new AdamW({ lr: [1e-2, 3e-2, 0.1][k] }));
    const n = 5;
    const pixels = randomPixels(n, backbone.config, 31);
    const state = runPrefix(backbone, pixels, Math.min(...specs.map((s) => splitPoint(s, backbone.config.depth))));
    const labels = [0, 1, 2, 1, 0];
    const losses: number[] = [];
    const before = tf.memory().numTensors;
    try {
      for (let step = 0; step < 3; step++) {
        losses.push(trainStep({ backbone, state, tapeBlocks, adapter: adapters[0], optimizer: opts[0], labels }).loss);
        const r = trainStep({ backbone, state, tapeBlocks, groups: adapters.slice(1).map((adapter, k) => ({ adapter, optimizer: opts[k + 1], rows: [4, 3, 2, 1, 0], labels })) });
        losses.push(...r.groups.map((g) => g.loss));
        // Optimizer moments are made on the first step only: after it, nothing grows.
        if (step === 0) expect(tf.memory().numTensors).toBeGreaterThanOrEqual(before);
      }
      return { losses, weights: adapters.map((a) => a.trainableVariables().map((v) => v.dataSync() as Float32Array)) };
    } finally {
      pixels.dispose();
      disposePrefix(state);
      for (const a of adapters) a.dispose();
    }
  }

  // Unset: the whole suffix on one tape (train-frozen.ts's one-tape path); 0: stage by stage, recomputed.
  it.each([
    ['one tape', undefined],
    ['stage by stage', 0],
  ])('same losses and weights after three steps (single and grouped, DTL and DTL+), within 1e-4: %s', async (_, tapeBlocks) => {
    const ref = await train('tfjs');
    const got = await train('onnxruntime', tapeBlocks);
    expect(got.losses).toHaveLength(ref.losses.length);
    got.losses.forEach((l, i) => expect(Math.abs(l - ref.losses[i])).toBeLessThan(1e-4));
    // The steps moved the weights, the same way on both engines.
    got.weights.forEach((vars, k) => vars.forEach((w, j) => expect(maxAbsDiff(w, ref.weights[k][j])).toBeLessThan(1e-4)));
    expect(ref.losses[0]).not.toBeCloseTo(ref.losses[ref.losses.length - 3], 3);
  });

  it.each([undefined, 0])('leaks no tensors across steps on the native path (tapeBlocks %s)', async (tapeBlocks) => {
    expect(await startBackboneEngine(backbone, 'onnxruntime', { threads: 1, provider: 'cpu' })).toBe('onnxruntime');
    const a = randomAdapter(backbone.config, specs[1], 70, 0.3);
    const adapter = loadAdapter(saveAdapter(a), backbone.config, { trainable: true }).adapter;
    a.dispose();
    const optimizer = new AdamW({ lr: 1e-2 });
    const pixels = randomPixels(3, backbone.config, 32);
    const state = runPrefix(backbone, pixels, 0);
    try {
      trainStep({ backbone, state, tapeBlocks, adapter, optimizer, labels: [0, 1, 2] });
      const after1 = tf.memory().numTensors;
      for (let i = 0; i < 3; i++) trainStep({ backbone, state, tapeBlocks, adapter, optimizer, labels: [0, 1, 2] });
      expect(tf.memory().numTensors).toBe(after1);
    } finally {
      pixels.dispose();
      disposePrefix(state);
      adapter.dispose();
    }
  });
});
