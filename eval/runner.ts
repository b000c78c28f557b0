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
  /** Extra rates tried when the best one sits on an edge of the grid (default 2). */
  maxExtensions?: number;
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

/** The next rate on the 1–3–10 ladder above (+1) or below (−1) `lr`, e.g. 0.03 → 0.1, 0.001 → 0.0003. */
export function nextLr(lr: number, direction: 1 | -1): number {
  const exp = Math.floor(Math.log10(lr) + 1e-9);
  const mant = lr / 10 ** exp;
  const ladder = [1, 3];
  const idx = ladder.findIndex((m) => Math.abs(m - mant) < 0.2);
  const i = (idx < 0 ? 0 : idx) + direction;
  const e = exp + Math.floor(i / 2);
  const m = ladder[((i % 2) + 2) % 2];
  return Number((m * 10 ** e).toPrecision(3));
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
    const tryLr = (candidate: number) => {
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
    };
    method.lrGrid.forEach(tryLr);
    // Highest validation accuracy; ties go to the smaller learning rate.
    const best = () => [...sweep].sort((x, y) => y.valAcc - x.valAcc || x.lr - y.lr)[0].lr;
    // A best rate on the edge of the grid says the grid was too narrow: extend it on that side,
    // one half-decade at a time, up to `maxExtensions` extra runs.
    for (let extra = 0; extra < (o.maxExtensions ?? 2); extra++) {
      const lrs = sweep.map((p) => p.lr).sort((x, y) => x - y);
      const b = best();
      if (b === lrs[lrs.length - 1]) tryLr(nextLr(b, +1));
      else if (b === lrs[0]) tryLr(nextLr(b, -1));
      else break;
    }
    lr = best();
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
