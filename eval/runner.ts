/**
 * The study: for every task and method, choose the learning rate on a validation split of the
 * 1,000 training images (never the test set), retrain on all 1,000 with it, then report test
 * accuracy, trainable parameters, one step's peak tensor memory (same batch for every method)
 * and the wall time of the final training run (including any feature/prefix caching it does).
 */
import type { Backbone } from '../src/model/index.js';
import { accuracyOf, pixelsOf, range, type Recipe } from './recipe.js';
import { TASK_IDS, buildTask, stratifiedSplit, type FashionData, type Task, type TaskId, type TaskSizes } from './tasks.js';
import type { Method, MethodId } from './methods/types.js';

export interface StudyOptions {
  tasks: readonly TaskId[];
  methods: readonly Method[];
  sizes: TaskSizes;
  recipe: Recipe;
  /** Fraction of the training images used as validation in the lr sweep. */
  valFraction: number;
  /** Batch of the memory measurement. */
  memoryBatch: number;
  /** Skip the sweep and use the middle of each method's grid. */
  noSweep?: boolean;
  seed: number;
  log?: (line: string) => void;
  /** Called after each (task, method) with everything so far (for incremental saving). */
  onProgress?: (results: MethodResult[]) => Promise<void> | void;
}

export interface SweepPoint {
  lr: number;
  valAcc: number;
  seconds: number;
}

export interface MethodResult {
  task: TaskId;
  taskTitle: string;
  method: MethodId;
  methodLabel: string;
  classes: number;
  trainImages: number;
  testImages: number;
  sweep: SweepPoint[];
  lr: number;
  testAcc: number;
  trainableParams: number;
  peakBytes: number;
  trainSeconds: number;
  losses: number[];
}

function timed<T>(f: () => T): { value: T; seconds: number } {
  const t0 = performance.now();
  const value = f();
  return { value, seconds: (performance.now() - t0) / 1000 };
}

async function runMethod(backbone: Backbone, task: Task, method: Method, o: StudyOptions): Promise<MethodResult> {
  const log = o.log ?? (() => {});
  const classes = task.labels.length;
  const all = range(task.train.labels.length);
  const testRows = range(task.test.labels.length);
  const sweep: SweepPoint[] = [];
  let lr = method.lrGrid[Math.floor(method.lrGrid.length / 2)];
  if (!o.noSweep && method.lrGrid.length > 1) {
    const split = stratifiedSplit(task.train.labels, o.valFraction, o.seed);
    for (const candidate of method.lrGrid) {
      const { value: valAcc, seconds } = timed(() => {
        const fitted = method.fit({ backbone, set: task.train, rows: split.train, classes, lr: candidate, recipe: o.recipe });
        try {
          return accuracyOf(fitted.predict(task.train, split.val), task.train, split.val);
        } finally {
          fitted.dispose();
        }
      });
      sweep.push({ lr: candidate, valAcc, seconds });
      log(`  ${task.id} ${method.id} lr ${candidate}: val ${(valAcc * 100).toFixed(1)}% (${seconds.toFixed(0)} s)`);
    }
    // Highest validation accuracy; ties go to the smaller learning rate (listed first).
    lr = sweep.reduce((best, p) => (p.valAcc > best.valAcc ? p : best)).lr;
  }
  const { value: fitted, seconds: trainSeconds } = timed(() => method.fit({ backbone, set: task.train, rows: all, classes, lr, recipe: o.recipe }));
  try {
    const testAcc = accuracyOf(fitted.predict(task.test, testRows), task.test, testRows);
    const memRows = range(Math.min(o.memoryBatch, all.length));
    const pixels = pixelsOf(backbone, task.train, memRows);
    let peakBytes: number;
    try {
      peakBytes = await method.stepPeakBytes({ backbone, classes, pixels, labels: memRows.map((r) => task.train.labels[r]) });
    } finally {
      pixels.dispose();
    }
    log(`${task.id} ${method.id}: lr ${lr} test ${(testAcc * 100).toFixed(2)}% params ${fitted.trainableParams} peak ${(peakBytes / 2 ** 20).toFixed(2)} MiB train ${trainSeconds.toFixed(0)} s`);
    return {
      task: task.id,
      taskTitle: task.title,
      method: method.id,
      methodLabel: method.label,
      classes,
      trainImages: all.length,
      testImages: testRows.length,
      sweep,
      lr,
      testAcc,
      trainableParams: fitted.trainableParams,
      peakBytes,
      trainSeconds,
      losses: fitted.losses,
    };
  } finally {
    fitted.dispose();
  }
}

export async function runStudy(backbone: Backbone, o: StudyOptions, data?: FashionData): Promise<MethodResult[]> {
  const results: MethodResult[] = [];
  for (const id of o.tasks) {
    // Seeded by task, so a task's images do not depend on which other tasks run.
    const task = buildTask(id, o.sizes, o.seed + 1000 * (TASK_IDS.indexOf(id) + 1), data);
    o.log?.(`task ${task.id}: ${task.title} — ${task.train.labels.length} train / ${task.test.labels.length} test, ${task.labels.length} classes`);
    for (const method of o.methods) {
      results.push(await runMethod(backbone, task, method, o));
      await o.onProgress?.(results);
    }
  }
  return results;
}
