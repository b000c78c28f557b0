/** What every transfer method offers the runner. */
import type * as tf from '@tensorflow/tfjs';
import type { AdapterSpec, Backbone } from '../../src/model/index.js';
import type { PreparedDataset } from '../../src/train/ingest/index.js';
import type { SplitPlan } from '../../src/train/examples.js';
import type { LabelledSet } from '../../scripts/pretrain/train.js';
import type { Recipe } from '../recipe.js';
import type { Task } from '../tasks.js';

/**
 * Table order: the two weak baselines, what a tenant gets (trainer-direct, then end to end over
 * HTTP), the tuned adapters, the heavier baselines.
 */
export const METHOD_IDS = ['pixel', 'linear', 'service', 'http', 'dtl', 'dtl+', 'lora', 'full'] as const;
export type MethodId = (typeof METHOD_IDS)[number];
/**
 * What `npm run eval` runs when --methods is not given: all but 'http', which repeats the service
 * defaults' training in a service process of its own (`--methods http` asks for it).
 */
export const DEFAULT_METHOD_IDS: readonly MethodId[] = METHOD_IDS.filter((m) => m !== 'http');

/** One task as every method sees it: the same data set and the same train/val split. */
export interface StudyTask {
  backbone: Backbone;
  task: Task;
  /** The task as the service's trainer takes it: train images unassigned, then the test images as 'test'. */
  dataset: PreparedDataset;
  /** The trainer's split of `dataset` (planSplits with the trainer's seed): train/val rows are rows of task.train. */
  plan: SplitPlan;
  recipe: Recipe;
}

export interface RunOutcome {
  /** Accuracy on plan.val (what chooses the learning rate). */
  valAcc: number;
  /** Accuracy on the task's test images. */
  testAcc: number;
  trainableParams: number;
  /** Mean training loss per epoch. */
  losses: number[];
  seconds: number;
  /** Peak learning rate actually used (the trainer's choice when none was given). */
  lr: number;
  /** The adapter's spec, for trainer-backed methods (memory is measured on it). */
  spec?: AdapterSpec;
  /** A short note for the report (e.g. the variant the service defaults picked). */
  note?: string;
}

export interface Method {
  id: MethodId;
  label: string;
  /**
   * Learning rates tried on the validation split; empty = none given (the service's defaults,
   * whatever the trainer then does).
   */
  lrGrid: number[];
  /** Trains on plan.train, reports val and test accuracy. */
  run(t: StudyTask, lr: number | undefined): Promise<RunOutcome>;
  /**
   * Peak tensor bytes of one optimisation step on `pixels` — everything from the pixels on (no
   * cache), after one warm-up step so optimiser moments already exist.
   */
  stepPeakBytes(args: { backbone: Backbone; classes: number; pixels: tf.Tensor4D; labels: number[]; outcome?: RunOutcome }): Promise<number>;
}

export interface FitArgs {
  backbone: Backbone;
  set: LabelledSet;
  /** Training rows of `set`. */
  rows: readonly number[];
  classes: number;
  lr: number;
  recipe: Recipe;
}

export interface Fitted {
  /** Trainable parameters (everything the optimiser updates, head included). */
  trainableParams: number;
  /** Mean training loss per epoch. */
  losses: number[];
  predict(set: LabelledSet, rows: readonly number[]): Int32Array;
  dispose(): void;
}

/** A baseline: its own small model and loop over the shared schedule (recipe.ts runEpochs). */
export interface BaselineMethod extends Method {
  fit(args: FitArgs): Fitted;
}
