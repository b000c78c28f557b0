/**
 * The grouped train step (K adapters, each on its own rows, through one suffix) against K
 * separate single-adapter steps: same losses, predictions and weights after several steps, for
 * plain DTL and DTL+ candidates mixed, with and without activation checkpointing.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AdamW,
  disposePrefix,
  gatherPrefix,
  initBackend,
  loadAdapter,
  runPrefix,
  saveAdapter,
  splitPoint,
  trainStep,
  type AdapterSpec,
  type Backbone,
} from '../../src/model/index.js';
import { DENSE_FUSION_MAX_PATCHES } from '../../src/model/layers.js';
import { randomAdapter, randomPixels, tinyBackbone, tinySpec } from '../helpers/tiny-backbone.js';
import { expectAppError, maxAbsDiff } from './expect.js';

describe('grouped train step', () => {
  let backbone: Backbone;
  let narrow: Backbone;
  let wide: Backbone;
  beforeAll(async () => {
    await initBackend('wasm');
    backbone = narrow = tinyBackbone({ width: 8, depth: 3, heads: 2, mlpDim: 16, patchSize: 4, imageSize: 8, seed: 4 });
    wide = tinyBackbone({ width: 8, depth: 3, heads: 2, mlpDim: 16, patchSize: 4, imageSize: 36, seed: 4 });
  });
  afterAll(() => {
    narrow.dispose();
    wide.dispose();
  });

  const specs: [string, AdapterSpec][] = [
    ['dtl', tinySpec({ loraBeforeBlocks: [0, 1, 2], addAfterBlocks: [1, 2] })],
    ['dtl+', tinySpec({ loraBeforeBlocks: [0, 1, 2], addAfterBlocks: [1, 2], fusionKernel: 3 })],
    ['dtl, other reads', tinySpec({ loraBeforeBlocks: [0, 2], addAfterBlocks: [1, 2], beta: 5 })],
    ['dtl+, kernel 2', tinySpec({ loraBeforeBlocks: [1, 2], addAfterBlocks: [1, 2], fusionKernel: 2 })],
  ];

  it.each([
    ['whole suffix taped', undefined, false],
    ['every block recomputed', 0, false],
    ['each group on its own rows', 1, true],
    // A 9×9 patch grid is above DENSE_FUSION_MAX_PATCHES: the grouped DTL+ conv runs as shifted slices.
    ['9×9 patch grid (fusion as shifted slices)', undefined, false, true],
  ])('K adapters in one step = K separate steps (DTL and DTL+ mixed): %s', (_, tapeBlocks, ownRows, wideGrid = false) => {
    const backbone = wideGrid ? wide : narrow;
    expect(backbone.config.gridSize ** 2 > DENSE_FUSION_MAX_PATCHES).toBe(wideGrid);
    const lrs = [1e-3, 3e-2, 1e-2, 0.1];
    const files = specs.map(([, spec], k) => {
      const a = randomAdapter(backbone.config, spec, 40 + k, 0.3);
      const bytes = saveAdapter(a);
      a.dispose();
      return bytes;
    });
    const load = () => files.map((b) => loadAdapter(b, backbone.config, { trainable: true }).adapter);
    const grouped = load();
    const alone = load();
    const optG = lrs.map((lr) => new AdamW({ lr }));
    const optA = lrs.map((lr) => new AdamW({ lr }));
    const n = 6;
    const pixels = randomPixels(n, backbone.config, 21);
    const split = Math.min(...grouped.map((a) => splitPoint(a.spec, backbone.config.depth)));
    const state = runPrefix(backbone, pixels, split);
    const labelsOf = (rows: number[]) => rows.map((r) => (r * 7 + 1) % 3);
    const rowsOf = (k: number) => (ownRows ? [(k + 1) % n, (k + 3) % n, (k + 4) % n] : [0, 1, 2, 3, 4, 5]);
    for (let step = 0; step < 3; step++) {
      const r = trainStep({
        backbone,
        state,
        tapeBlocks,
        groups: grouped.map((adapter, k) => ({ adapter, optimizer: optG[k], rows: rowsOf(k), labels: labelsOf(rowsOf(k)) })),
      });
      expect(r.groups).toHaveLength(specs.length);
      alone.forEach((adapter, k) => {
        const sub = gatherPrefix(state, rowsOf(k));
        try {
          const s = trainStep({ backbone, adapter, optimizer: optA[k], state: sub, labels: labelsOf(rowsOf(k)), tapeBlocks });
          expect(Math.abs(s.loss - r.groups[k].loss)).toBeLessThan(1e-5);
          expect([...r.groups[k].predicted]).toEqual([...s.predicted]);
        } finally {
          disposePrefix(sub);
        }
      });
    }
    grouped.forEach((a, k) => {
      const vb = alone[k].trainableVariables();
      a.trainableVariables().forEach((v, i) => expect(maxAbsDiff(v.dataSync(), vb[i].dataSync())).toBeLessThan(1e-5));
    });
    disposePrefix(state);
    pixels.dispose();
    for (const x of [...grouped, ...alone, ...optG, ...optA]) x.dispose();
  });

  it('refuses groups of unequal length and an adapter in two groups', async () => {
    const a = randomAdapter(backbone.config, specs[0][1], 1);
    const b = randomAdapter(backbone.config, specs[1][1], 2);
    const opt = new AdamW();
    const pixels = randomPixels(3, backbone.config, 5);
    const state = runPrefix(backbone, pixels, 1);
    await expectAppError(
      () => trainStep({ backbone, state, groups: [{ adapter: a, optimizer: opt, rows: [0, 1], labels: [0, 1] }, { adapter: b, optimizer: opt, rows: [2], labels: [0] }] }),
      'internal',
    );
    await expectAppError(
      () => trainStep({ backbone, state, groups: [{ adapter: a, optimizer: opt, rows: [0], labels: [0] }, { adapter: a, optimizer: opt, rows: [1], labels: [1] }] }),
      'internal',
    );
    disposePrefix(state);
    pixels.dispose();
    for (const x of [a, b, opt]) x.dispose();
  });

  it('repeated grouped steps with per-row weights leave no tensor behind (after the optimizers\' first step)', () => {
    const adapters = specs.slice(0, 3).map(([, spec], k) => randomAdapter(backbone.config, spec, 70 + k, 0.3));
    const opts = adapters.map(() => new AdamW({ lr: 1e-2 }));
    const pixels = randomPixels(4, backbone.config, 9);
    const state = runPrefix(backbone, pixels, 1);
    const rows = [0, 1, 2, 3];
    const labels = [0, 1, 2, 0];
    const weights = Float32Array.from([0.5, 2, 1, 0.5]);
    const step = () => trainStep({ backbone, state, groups: adapters.map((adapter, k) => ({ adapter, optimizer: opts[k], rows, labels, weights: k === 1 ? undefined : weights })) });
    step(); // the optimizers create their moment tensors on the first step
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) step();
    expect(tf.memory().numTensors).toBe(before);
    disposePrefix(state);
    pixels.dispose();
    for (const x of [...adapters, ...opts]) x.dispose();
  });
});
