/**
 * Golden fixtures through the split path: the authors' logits from the real preprocessing and
 * forward, and the cross-tenant batch (one prefix, several adapters, one suffix) against each
 * adapter run alone.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  concatPrefix,
  disposePrefix,
  forwardSuffix,
  gatherPrefix,
  imagesToTensor,
  initBackend,
  loadAdapter,
  loadBackboneFromDir,
  predictLogits,
  preprocessImage,
  runPrefix,
  saveAdapter,
  splitPoint,
  type Adapter,
  type AdapterSpec,
  type Backbone,
} from '../../src/model/index.js';
import { randomAdapter } from '../helpers/tiny-backbone.js';
import { maxAbsDiff } from './expect.js';

const FIXTURES = path.resolve(import.meta.dirname, '../fixtures');

interface Expected {
  cases: Array<{ image: string; logits: number[]; probabilities: number[]; top1: string }>;
}

describe.each(['dtl-golden-hf', 'dtl-golden-timm-plus'])('golden fixture %s', (name) => {
  const dir = path.join(FIXTURES, name);
  const expected = JSON.parse(readFileSync(path.join(dir, 'expected.json'), 'utf8')) as Expected;
  let backbone: Backbone;
  let golden: Adapter;
  let pixels: tf.Tensor4D;

  beforeAll(async () => {
    await initBackend('wasm');
    backbone = await loadBackboneFromDir(dir);
    golden = loadAdapter(readFileSync(path.join(dir, 'adapter.safetensors')), backbone.config).adapter;
    const images = await Promise.all(expected.cases.map((c) => preprocessImage(readFileSync(path.join(dir, c.image)), backbone.config)));
    pixels = imagesToTensor(images, backbone.config);
  });
  afterAll(() => {
    pixels.dispose();
    golden.dispose();
    backbone.dispose();
  });

  it('predictLogits matches expected.json to 1e-4', () => {
    const logits = predictLogits(backbone, golden, pixels);
    const got = logits.arraySync();
    logits.dispose();
    expected.cases.forEach((c, i) => {
      expect(maxAbsDiff(got[i], c.logits)).toBeLessThan(1e-4);
      expect(golden.spec.labels[got[i].indexOf(Math.max(...got[i]))]).toBe(c.top1);
    });
  });

  it('one prefix + one batched suffix for several adapters equals each adapter alone (1e-5)', () => {
    const specs: AdapterSpec[] = [
      { rank: 2, beta: 100, loraBeforeBlocks: [0, 1, 2, 3], addAfterBlocks: [0, 1, 2, 3], fusionKernel: 0, labels: ['p', 'q'] },
      { rank: 3, beta: 50, loraBeforeBlocks: [1, 3], addAfterBlocks: [3], fusionKernel: 4, labels: ['a', 'b', 'c', 'd', 'e'] },
      { rank: 1, beta: 100, loraBeforeBlocks: [0, 2], addAfterBlocks: [2, 3], fusionKernel: 3, labels: ['x', 'y', 'z'] },
    ];
    // Created for training, then saved and reloaded the way the serving path gets them.
    const extra = specs.map((spec, i) => {
      const trained = randomAdapter(backbone.config, spec, 20 + i, 0.2);
      const loaded = loadAdapter(saveAdapter(trained), backbone.config).adapter;
      trained.dispose();
      return loaded;
    });
    const adapters = [golden, ...extra];
    const groups = [
      { adapter: golden, rows: [0, 1, 2] },
      { adapter: extra[0], rows: [2, 0] },
      { adapter: extra[1], rows: [1] },
      { adapter: extra[2], rows: [0, 0, 2] },
    ];
    const before = tf.memory().numTensors;
    const split = Math.min(...adapters.map((a) => splitPoint(a.spec, backbone.config.depth)));
    expect(split).toBe(1);
    const state = runPrefix(backbone, pixels, split);
    const batched = forwardSuffix(backbone, state, groups).map((t) => {
      const v = t.arraySync();
      t.dispose();
      return v;
    });
    disposePrefix(state);
    expect(tf.memory().numTensors).toBe(before);

    groups.forEach((g, gi) => {
      const alone = predictLogits(backbone, g.adapter, pixels);
      const rows = alone.arraySync();
      alone.dispose();
      expect(batched[gi]).toHaveLength(g.rows.length);
      g.rows.forEach((r, k) => {
        expect(batched[gi][k]).toHaveLength(g.adapter.spec.labels.length);
        expect(maxAbsDiff(batched[gi][k], rows[r])).toBeLessThan(1e-5);
      });
    });
    // The golden adapter inside the mixed batch still matches the authors' numbers.
    expected.cases.forEach((c, i) => expect(maxAbsDiff(batched[0][i], c.logits)).toBeLessThan(1e-4));
    for (const a of extra) a.dispose();
  });

  it('gathered and concatenated prefix states give the same logits as a fresh prefix', () => {
    const split = splitPoint(golden.spec, backbone.config.depth);
    const whole = runPrefix(backbone, pixels, split);
    const head = tf.slice(pixels, [0, 0, 0, 0], [2, -1, -1, -1]) as tf.Tensor4D;
    const tail = tf.slice(pixels, [2, 0, 0, 0], [1, -1, -1, -1]) as tf.Tensor4D;
    const first = runPrefix(backbone, head, split);
    const last = runPrefix(backbone, tail, split);
    const joined = concatPrefix([first, last]);
    const fanned = gatherPrefix(whole, [2, 2, 0]);
    const [a] = forwardSuffix(backbone, whole, [{ adapter: golden, rows: [0, 1, 2] }]);
    const [b] = forwardSuffix(backbone, joined, [{ adapter: golden, rows: [0, 1, 2] }]);
    const [c] = forwardSuffix(backbone, fanned, [{ adapter: golden, rows: [0, 1, 2] }]);
    const av = a.arraySync();
    expect(maxAbsDiff(b.dataSync(), a.dataSync())).toBeLessThan(1e-5);
    const cv = c.arraySync();
    expect(maxAbsDiff(cv[0], av[2])).toBeLessThan(1e-5);
    expect(maxAbsDiff(cv[1], av[2])).toBeLessThan(1e-5);
    expect(maxAbsDiff(cv[2], av[0])).toBeLessThan(1e-5);
    for (const s of [whole, first, last, joined, fanned]) disposePrefix(s);
    for (const t of [a, b, c, head, tail]) t.dispose();
  });
});
