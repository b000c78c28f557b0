/**
 * The study: for every task and method, train on the trainer's training split of the task's
 * training images, choose the learning rate by accuracy on the trainer's validation split (never
 * the test set), and report the chosen run's test accuracy, trainable parameters, one step's peak
 * tensor memory (same batch for every method) and its wall time (feature/prefix caching included).
 * DTL, DTL+ and the service defaults train through src/train's trainer (methods/dtl.ts); a method
 * with no grid (service defaults) runs once, with whatever the trainer's defaults choose.
 */
import type { Backbone } from '../src/model/index.js';
import { pixelsOf, range, type Recipe } from './recipe.js';
import { studyTask } from './study-task.js';
import { TASK_IDS, buildTask, type Task, type TaskId, type TaskSizes, type TaskSources } from './tasks.js';
import type { Method, MethodId, RunOutcome, StudyTask } from './methods/types.js';

export interface StudyOptions {
  tasks: readonly TaskId[];
  methods: readonly Method[];
  sizes: TaskSizes;
  recipe: Recipe;
  /** Batch of the memory measurement. */
  memoryBatch: number;
  /** Skip the sweep and use the middle of each method's grid. */
  noSweep?: boolean;
  /** Extra rates tried when the best one sits on an edge of the grid (default 2). */
  maxExtensions?: number;
  /** Seeds the task images (the training seed is recipe.seed). */
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
  /** Images the method trained on (the trainer's train split) and validated on. */
  trainImages: number;
  valImages: number;
  testImages: number;
  sweep: SweepPoint[];
  /** The learning rate of the reported run (for the service defaults: the one the trainer used). */
  lr: number;
  /** false when the method was given no learning rate (the service's defaults). */
  lrChosenByStudy: boolean;
  valAcc: number;
  testAcc: number;
  trainableParams: number;
  peakBytes: number;
  trainSeconds: number;
  losses: number[];
  note?: string;
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

/** Runs the grid (plus edge extensions) and returns every run; the best by validation accuracy wins. */
async function sweepRuns(t: StudyTask, method: Method, o: StudyOptions): Promise<{ runs: Map<number, RunOutcome>; best: number }> {
  const log = o.log ?? (() => {});
  const runs = new Map<number, RunOutcome>();
  const tryLr = async (lr: number) => {
    const r = await method.run(t, lr);
    runs.set(lr, r);
    log(`  ${t.task.id} ${method.id} lr ${lr}: val ${(r.valAcc * 100).toFixed(1)}% (${r.seconds.toFixed(0)} s)`);
  };
  const grid = o.noSweep ? [method.lrGrid[Math.floor(method.lrGrid.length / 2)]] : method.lrGrid;
  for (const lr of grid) await tryLr(lr);
  // Highest validation accuracy; ties go to the smaller learning rate.
  const best = () => [...runs.entries()].sort((x, y) => y[1].valAcc - x[1].valAcc || x[0] - y[0])[0][0];
  // A best rate on the edge of the grid says the grid was too narrow: extend it on that side,
  // one half-decade at a time, up to `maxExtensions` extra runs.
  for (let extra = 0; !o.noSweep && extra < (o.maxExtensions ?? 2); extra++) {
    const lrs = [...runs.keys()].sort((x, y) => x - y);
    const b = best();
    if (b === lrs[lrs.length - 1] && b < 1) await tryLr(nextLr(b, +1));
    else if (b === lrs[0]) await tryLr(nextLr(b, -1));
    else break;
  }
  return { runs, best: best() };
}

async function runMethod(t: StudyTask, method: Method, o: StudyOptions): Promise<MethodResult> {
  const log = o.log ?? (() => {});
  const { task, backbone } = t;
  let chosen: RunOutcome;
  let sweep: SweepPoint[] = [];
  if (method.lrGrid.length === 0) {
    chosen = await method.run(t, undefined);
  } else {
    const { runs, best } = await sweepRuns(t, method, o);
    sweep = [...runs.entries()].map(([lr, r]) => ({ lr, valAcc: r.valAcc, seconds: r.seconds }));
    chosen = runs.get(best)!;
  }
  const memRows = range(Math.min(o.memoryBatch, task.train.labels.length));
  const pixels = pixelsOf(backbone, task.train, memRows);
  let peakBytes: number;
  try {
    peakBytes = await method.stepPeakBytes({ backbone, classes: task.labels.length, pixels, labels: memRows.map((r) => task.train.labels[r]), outcome: chosen });
  } finally {
    pixels.dispose();
  }
  log(
    `${task.id} ${method.id}: lr ${chosen.lr} val ${(chosen.valAcc * 100).toFixed(1)}% test ${(chosen.testAcc * 100).toFixed(2)}% ` +
      `params ${chosen.trainableParams} peak ${(peakBytes / 2 ** 20).toFixed(2)} MiB train ${chosen.seconds.toFixed(0)} s${chosen.note ? ` (${chosen.note})` : ''}`,
  );
  return {
    task: task.id,
    taskTitle: task.title,
    method: method.id,
    methodLabel: method.label,
    classes: task.labels.length,
    trainImages: t.plan.train.length,
    valImages: t.plan.val.length,
    testImages: task.test.labels.length,
    sweep,
    lr: chosen.lr,
    lrChosenByStudy: method.lrGrid.length > 0,
    valAcc: chosen.valAcc,
    testAcc: chosen.testAcc,
    trainableParams: chosen.trainableParams,
    peakBytes,
    trainSeconds: chosen.seconds,
    losses: chosen.losses,
    note: chosen.note,
  };
}

/** Seeded by task, so a task's images do not depend on which other tasks run. */
export function taskFor(id: TaskId, o: Pick<StudyOptions, 'sizes' | 'seed'>, sources?: TaskSources): Task {
  return buildTask(id, o.sizes, o.seed + 1000 * (TASK_IDS.indexOf(id) + 1), sources);
}

export async function runStudy(backbone: Backbone, o: StudyOptions, sources?: TaskSources): Promise<MethodResult[]> {
  const results: MethodResult[] = [];
  for (const id of o.tasks) {
    const task = taskFor(id, o, sources);
    const t = studyTask(backbone, task, o.recipe);
    o.log?.(`task ${task.id}: ${task.title} — ${task.train.labels.length} train (${t.plan.train.length} + ${t.plan.val.length} val) / ${task.test.labels.length} test, ${task.labels.length} classes`);
    for (const method of o.methods) {
      results.push(await runMethod(t, method, o));
      await o.onProgress?.(results);
    }
  }
  return results;
}
