/**
 * The recipe search: the halving schedule and grids (pure), and the trainer running it on the tiny
 * backbone — deterministic for a seed, visible as events and in the metrics, skipped per axis by
 * explicit values, and an abort mid-search leaves nothing behind.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend, type Backbone, type BackboneConfig } from '../../src/model/index.js';
import { candidateEpochs, halvingRungs } from '../../src/train/halving.js';
import { parseHyperparameters, type HyperparametersInput } from '../../src/train/hyperparameters.js';
import type { PreparedDataset } from '../../src/train/ingest/index.js';
import { BUDGETS, planSearch, type SearchEvent } from '../../src/train/search.js';
import { trainAdapter, type TrainOptions } from '../../src/train/trainer.js';
import { tinyBackbone } from '../helpers/tiny-backbone.js';
import { TINY, shapesPrepared } from './helpers.js';

const grid4 = { gridSize: 4, depth: 4, width: 32 } as BackboneConfig;
const grid2 = { gridSize: 2, depth: 4, width: 32 } as BackboneConfig;

describe('search plan (pure)', () => {
  it('halving keeps ⌈n/η⌉ at doubling rungs until one is left; a rung at the end decides there', () => {
    expect(halvingRungs(14, 22, 2, 3)).toEqual([
      { until: 2, keep: 5 },
      { until: 4, keep: 2 },
      { until: 8, keep: 1 },
    ]);
    expect(halvingRungs(8, 3, 2, 4)).toEqual([
      { until: 2, keep: 2 },
      { until: 3, keep: 1 },
    ]);
    expect(halvingRungs(1, 22, 2, 3)).toEqual([]);
    // The balanced search on a 22-epoch run: 60 candidate-epochs (a single run is 22).
    expect(candidateEpochs(14, 22, halvingRungs(14, 22, 2, 3))).toBe(60);
  });

  it('every budget spans lr 3e-4 … 0.3 on a log grid; explicit values skip their axis', () => {
    for (const b of Object.values(BUDGETS)) {
      expect(Math.min(...b.lrs)).toBeCloseTo(3e-4, 10);
      expect(Math.max(...b.lrs)).toBeCloseTo(0.3, 10);
    }
    const auto = planSearch(parseHyperparameters({}), grid4, 22);
    expect(auto.recipes).toHaveLength(14);
    expect(auto.grid.variant).toEqual(['dtl', 'dtl+']);
    expect(planSearch(parseHyperparameters({ budget: 'fast' }), grid4, 22).recipes).toHaveLength(8);
    expect(planSearch(parseHyperparameters({ budget: 'best' }), grid4, 22).recipes.length).toBeGreaterThan(14);
    const lrFixed = planSearch(parseHyperparameters({ lr: 0.05 }), grid4, 22);
    expect(lrFixed.recipes.map((r) => [r.lr, r.variant])).toEqual([
      [0.05, 'dtl'],
      [0.05, 'dtl+'],
    ]);
    const variantFixed = planSearch(parseHyperparameters({ variant: 'dtl+' }), grid4, 22);
    expect(variantFixed.recipes.every((r) => r.variant === 'dtl+')).toBe(true);
    expect(variantFixed.grid.lr).toEqual(BUDGETS.balanced.lrs);
    const none = planSearch(parseHyperparameters({ lr: 0.05, variant: 'dtl' }), grid4, 22);
    expect(none).toMatchObject({ searched: false, rungs: [] });
    expect(none.recipes).toHaveLength(1);
    // dtl+ is searched only where its kernel fits the patch grid.
    expect(planSearch(parseHyperparameters({}), grid2, 22).grid.variant).toEqual(['dtl']);
    // Rates below minLr are left out (their cosine would run upwards).
    expect(planSearch(parseHyperparameters({ minLr: 0.01 }), grid4, 22).grid.lr).toEqual([0.01, 0.03, 0.1, 0.3]);
  });
});

describe('trainAdapter with the search', () => {
  let backbone: Backbone;
  let ds: PreparedDataset;
  beforeAll(async () => {
    await initBackend('wasm');
    backbone = tinyBackbone(TINY);
    ds = await shapesPrepared({ classes: 4, perClass: 16, seed: 5, test: 4 });
  });
  afterAll(() => backbone.dispose());

  // fast: 4 rates × 2 variants; rungs after epoch 2 (2 kept) and at the end (epoch 3).
  const SMALL: HyperparametersInput = { epochs: 2, warmupEpochs: 1, batchSize: 16, seed: 3, patience: 0, budget: 'fast' };

  async function run(h: HyperparametersInput, opts: Partial<TrainOptions> = {}) {
    const events: SearchEvent[] = [];
    const r = await trainAdapter({
      backbone,
      dataset: ds,
      hyperparameters: parseHyperparameters({ ...SMALL, ...h }),
      cacheBytes: 1 << 30,
      onSearch: (e) => void events.push(e),
      ...opts,
    });
    r.adapter.dispose();
    return { ...r, events };
  }

  it('searches lr × variant, reports every candidate per rung, records the choice, and is deterministic for a seed', async () => {
    const busy: number[] = [];
    const a = await run({}, { onBatch: (ms) => void busy.push(ms) });
    // The lease hears of every grouped step (and of the first batch before it runs: × 8 candidates).
    const trainBatches = Math.ceil(a.metrics.split.train / 16);
    expect(busy.length).toBeGreaterThanOrEqual(1 + 3 * trainBatches);
    expect(busy.every((ms) => ms > 0)).toBe(true);
    const s = a.metrics.search!;
    expect(s.grid).toEqual({ lr: [3e-4, 3e-3, 3e-2, 0.3], variant: ['dtl', 'dtl+'] });
    expect(s.candidates).toHaveLength(8);
    expect(s.rungs).toEqual([
      { until: 2, keep: 2 },
      { until: 3, keep: 1 },
    ]);
    for (const c of s.candidates) expect(c.valAccuracy).toBeGreaterThanOrEqual(0);
    expect(s.candidates.filter((c) => c.droppedAtRung === null)).toEqual([expect.objectContaining(s.chosen)]);
    expect(s.candidates.filter((c) => c.droppedAtRung === 1)).toHaveLength(6);
    expect(a.hyperparameters).toMatchObject(s.chosen);
    expect(a.spec.fusionKernel).toBe(s.chosen.variant === 'dtl+' ? 3 : 0);
    expect(s.searchSeconds).toBeGreaterThan(0);
    expect(a.metrics.epochsRun).toBe(3);
    expect(a.events.map((e) => e.stage)).toEqual(['start', ...Array(8).fill('candidate'), 'rung', 'candidate', 'candidate', 'rung', 'chosen']);
    expect(a.events.filter((e) => e.stage === 'candidate' && e.rung === 1 && e.kept)).toHaveLength(2);

    const b = await run({});
    expect(b.metrics.search!.candidates).toEqual(s.candidates);
    expect(b.metrics.search!.chosen).toEqual(s.chosen);
    expect(b.metrics.lossCurve.map((p) => p.trainLoss)).toEqual(a.metrics.lossCurve.map((p) => p.trainLoss));
  });

  it('an explicit lr and variant skip the search; an explicit variant keeps the lr axis only', async () => {
    const fixed = await run({ lr: 0.03, variant: 'dtl+' });
    expect(fixed.events).toEqual([]);
    expect(fixed.metrics.search).toBeUndefined();
    expect(fixed.hyperparameters).toMatchObject({ lr: 0.03, variant: 'dtl+' });
    const lrOnly = await run({ variant: 'dtl' });
    expect(lrOnly.metrics.search!.candidates.map((c) => c.variant)).toEqual(['dtl', 'dtl', 'dtl', 'dtl']);
    expect(lrOnly.hyperparameters.variant).toBe('dtl');
  });

  it('an abort mid-search rejects with the reason and frees every candidate', async () => {
    const before = tf.memory().numTensors;
    const controller = new AbortController();
    const reason = new Error('cancelled mid-search');
    const p = run({ epochs: 20 }, { signal: controller.signal, onEpoch: (e) => (e.epoch === 1 ? controller.abort(reason) : undefined) });
    await expect(p).rejects.toBe(reason);
    expect(tf.memory().numTensors).toBe(before);
  });
});
