/**
 * The study trains DTL, DTL+ and the service defaults through the service's trainer, not a loop
 * of its own: the same task, seed and hyperparameters give the very same loss curve and
 * accuracies through eval's method and through `trainAdapter` called as the train job calls it;
 * the baselines walk the trainer's schedule and split.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config.js';
import { initBackend, type Backbone } from '../../src/model/index.js';
import { parseHyperparameters } from '../../src/train/hyperparameters.js';
import { trainAdapter } from '../../src/train/trainer.js';
import { dtl, dtlPlus, serviceDefaults } from '../../eval/methods/dtl.js';
import { linearProbe } from '../../eval/methods/linear-probe.js';
import { DEFAULT_RECIPE, runEpochs, type Recipe } from '../../eval/recipe.js';
import { studyTask } from '../../eval/study-task.js';
import { buildTask } from '../../eval/tasks.js';
import type { StudyTask } from '../../eval/methods/types.js';
import { tinyBackbone } from '../helpers/tiny-backbone.js';

describe('eval trains DTL through src/train', () => {
  let backbone: Backbone;
  let t: StudyTask;
  const recipe: Recipe = { ...DEFAULT_RECIPE, epochs: 3, warmupEpochs: 1, seed: 5 };
  beforeAll(async () => {
    await initBackend('wasm');
    backbone = tinyBackbone({ width: 16, depth: 4, heads: 2, mlpDim: 32, patchSize: 7, imageSize: 28, seed: 4 });
    t = studyTask(backbone, buildTask('shapes', { train: 30, test: 12 }, 9), recipe);
  });
  afterAll(() => backbone.dispose());

  const direct = async (input: Record<string, unknown>) => {
    const r = await trainAdapter({ backbone, dataset: t.dataset, hyperparameters: parseHyperparameters(input), cacheBytes: configSchema.parse({}).TRAIN_CACHE_BYTES });
    try {
      return { losses: r.metrics.lossCurve.map((p) => p.trainLoss), val: r.metrics.bestValAccuracy, test: r.metrics.evaluation.accuracy, params: r.metrics.trainableParams };
    } finally {
      r.adapter.dispose();
    }
  };

  it('the task goes in as the train job would get it: training images unassigned, test images as the test split', () => {
    expect(t.dataset.labelIds.length).toBe(42);
    expect([...t.dataset.splits.slice(0, 30)].every((s) => s === 0)).toBe(true);
    expect([...t.dataset.splits.slice(30)].every((s) => s === 3)).toBe(true);
    expect(t.plan.test).toEqual(Array.from({ length: 12 }, (_, i) => 30 + i));
    expect([...t.plan.train, ...t.plan.val].sort((a, b) => a - b)).toEqual(Array.from({ length: 30 }, (_, i) => i));
    // Stratified: every one of the 6 shapes (5 images each) gives one image to validation.
    for (let c = 0; c < 6; c++) expect(t.plan.val.filter((i) => t.task.train.labels[i] === c).length).toBe(1);
  });

  for (const [method, variant] of [
    [dtl, 'dtl'],
    [dtlPlus, 'dtl+'],
  ] as const) {
    it(`${variant}: eval's run is trainAdapter's run (same loss curve, accuracies, parameters)`, async () => {
      const before = tf.memory().numTensors;
      const viaEval = await method.run(t, 0.03);
      const viaTrainer = await direct({ lr: 0.03, variant, seed: 5, epochs: 3, warmupEpochs: 1 });
      expect(viaEval.losses).toHaveLength(4);
      expect(viaEval.losses).toEqual(viaTrainer.losses);
      expect(viaEval.valAcc).toBe(viaTrainer.val);
      expect(viaEval.testAcc).toBe(viaTrainer.test);
      expect(viaEval.trainableParams).toBe(viaTrainer.params);
      expect(viaEval.lr).toBe(0.03);
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  it('service defaults: an empty hyperparameter object, exactly as the train job passes it', async () => {
    const viaEval = await serviceDefaults.run(t, 0.5);
    const viaTrainer = await direct({});
    expect(serviceDefaults.lrGrid).toEqual([]);
    expect(viaEval.losses).toEqual(viaTrainer.losses);
    expect(viaEval.testAcc).toBe(viaTrainer.test);
    // The peak of the schedule the trainer used, whatever the defaults are.
    expect(viaEval.lr).toBeGreaterThan(0);
    expect(viaEval.lr).not.toBe(0.5);
  });

  it('baselines walk the trainer’s per-epoch learning rates and train on its split', async () => {
    const lrs: number[] = [];
    const seen = new Set<number>();
    runEpochs(t.plan.train, t.recipe, 0.03, (batch, lr) => {
      if (lrs[lrs.length - 1] !== lr) lrs.push(lr);
      batch.forEach((r) => seen.add(r));
      return 0;
    });
    const r = await trainAdapter({ backbone, dataset: t.dataset, hyperparameters: parseHyperparameters({ lr: 0.03, seed: 5, epochs: 3, warmupEpochs: 1, patience: 0 }), cacheBytes: 1 << 20 });
    r.adapter.dispose();
    expect(lrs).toEqual(r.metrics.lossCurve.map((p) => p.lr));
    expect([...seen].sort((a, b) => a - b)).toEqual(t.plan.train);
    const out = await linearProbe.run(t, 0.1);
    expect(out.losses).toHaveLength(4);
    expect(out.valAcc).toBeGreaterThanOrEqual(0);
  });
});
