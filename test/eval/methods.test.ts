import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend, type Backbone } from '../../src/model/index.js';
import { autoRank } from '../../src/train/hyperparameters.js';
import { dtl, dtlPlus, serviceDefaults } from '../../eval/methods/dtl.js';
import { fullFinetune } from '../../eval/methods/full-finetune.js';
import { linearProbe } from '../../eval/methods/linear-probe.js';
import { lora } from '../../eval/methods/lora.js';
import { pixelLogReg } from '../../eval/methods/pixel-lr.js';
import type { BaselineMethod, Method, MethodId } from '../../eval/methods/types.js';
import { DEFAULT_RECIPE, accuracyOf, pixelsOf, range } from '../../eval/recipe.js';
import { studyTask } from '../../eval/study-task.js';
import { buildTask, type Task } from '../../eval/tasks.js';
import { tinyBackbone } from '../helpers/tiny-backbone.js';

const D = 16;
const DEPTH = 4;
const MLP = 32;

describe('transfer methods (one tiny epoch each)', () => {
  let backbone: Backbone;
  let task: Task;
  const peaks = new Map<MethodId, number>();
  beforeAll(async () => {
    await initBackend('wasm');
    backbone = tinyBackbone({ width: D, depth: DEPTH, heads: 2, mlpDim: MLP, patchSize: 7, imageSize: 28, seed: 11 });
    task = buildTask('shapes', { train: 24, test: 12 }, 3);
  });
  afterAll(() => backbone.dispose());

  const classes = 6;
  const head = D * classes + classes;
  const backboneParams = 7 * 7 * 3 * D + D + D + 17 * D + DEPTH * (4 * (D * D + D) + 4 * D + D * MLP + MLP + MLP * D + D) + 2 * D;
  // The trainer-backed rows train at rank 'auto' (4 at this width 16).
  const R = autoRank(D);
  const expected: Record<MethodId, number> = {
    pixel: 28 * 28 * classes + classes,
    linear: head,
    service: DEPTH * 2 * R * D + head,
    http: DEPTH * 2 * R * D + head,
    dtl: DEPTH * 2 * R * D + head,
    'dtl+': DEPTH * 2 * R * D + 9 * D + head,
    lora: DEPTH * 2 * 2 * 4 * D + head,
    full: backboneParams + head,
  };

  const baselines: BaselineMethod[] = [pixelLogReg, linearProbe, lora, fullFinetune];
  for (const method of baselines) {
    it(`${method.id}: trains, predicts, counts its parameters and measures a step without leaking`, async () => {
      const before = tf.memory().numTensors;
      const recipe = { ...DEFAULT_RECIPE, epochs: 1, warmupEpochs: 0, batchSize: 8 };
      const fitted = method.fit({ backbone, set: task.train, rows: range(24), classes, lr: method.lrGrid[0], recipe });
      expect(fitted.losses).toHaveLength(1);
      expect(Number.isFinite(fitted.losses[0])).toBe(true);
      expect(fitted.losses[0]).toBeGreaterThan(0);
      expect(fitted.trainableParams).toBe(expected[method.id]);
      const pred = fitted.predict(task.test, range(12));
      expect(pred.length).toBe(12);
      expect(pred.every((p) => p >= 0 && p < classes)).toBe(true);
      const acc = accuracyOf(pred, task.test, range(12));
      expect(acc).toBeGreaterThanOrEqual(0);
      expect(acc).toBeLessThanOrEqual(1);
      fitted.dispose();
      const px = pixelsOf(backbone, task.train, range(8));
      const peak = await method.stepPeakBytes({ backbone, classes, pixels: px, labels: Array.from(task.train.labels.slice(0, 8)) });
      px.dispose();
      expect(peak).toBeGreaterThan(0);
      peaks.set(method.id, peak);
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  // DTL, DTL+ and the service defaults have no fit of their own: they run the service's trainer.
  const trained: Method[] = [dtl, dtlPlus];
  for (const method of trained) {
    it(`${method.id}: trains through the trainer, counts its parameters and measures a step without leaking`, async () => {
      const before = tf.memory().numTensors;
      const t = studyTask(backbone, task, { ...DEFAULT_RECIPE, epochs: 1, warmupEpochs: 0, batchSize: 8 });
      const out = await method.run(t, method.lrGrid[0]);
      expect(out.losses).toHaveLength(1);
      expect(out.losses[0]).toBeGreaterThan(0);
      expect(out.trainableParams).toBe(expected[method.id]);
      expect(out.testAcc).toBeGreaterThanOrEqual(0);
      expect(out.testAcc).toBeLessThanOrEqual(1);
      expect(out.spec?.fusionKernel).toBe(method.id === 'dtl+' ? 3 : 0);
      const px = pixelsOf(backbone, task.train, range(8));
      const peak = await method.stepPeakBytes({ backbone, classes, pixels: px, labels: Array.from(task.train.labels.slice(0, 8)), outcome: out });
      px.dispose();
      expect(peak).toBeGreaterThan(0);
      peaks.set(method.id, peak);
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  it('service defaults take no learning rate from the study', () => {
    expect(serviceDefaults.lrGrid).toEqual([]);
    expect(serviceDefaults.id).toBe('service');
  });

  it('orders step memory as DTL’s design says: pixel < linear < DTL < LoRA (tape over every block)', () => {
    expect(peaks.get('pixel')!).toBeLessThan(peaks.get('linear')!);
    expect(peaks.get('linear')!).toBeLessThan(peaks.get('dtl')!);
    expect(peaks.get('dtl')!).toBeLessThan(peaks.get('lora')!);
  });
});
