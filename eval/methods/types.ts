/** What every transfer method offers the runner. */
import type * as tf from '@tensorflow/tfjs';
import type { Backbone } from '../../src/model/index.js';
import type { LabelledSet } from '../../scripts/pretrain/train.js';
import type { Recipe } from '../recipe.js';

export const METHOD_IDS = ['linear', 'dtl', 'dtl+', 'lora', 'full'] as const;
export type MethodId = (typeof METHOD_IDS)[number];

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

export interface Method {
  id: MethodId;
  label: string;
  /** Learning rates tried on the validation split. */
  lrGrid: number[];
  /** Trains on `rows` and returns the fitted model (synchronous compute; async for symmetry). */
  fit(args: FitArgs): Fitted;
  /**
   * Peak tensor bytes of one optimisation step on `pixels` — everything from the pixels on (no
   * cache), after one warm-up step so optimiser moments already exist.
   */
  stepPeakBytes(args: Omit<FitArgs, 'rows' | 'lr' | 'recipe' | 'set'> & { pixels: tf.Tensor4D; labels: number[] }): Promise<number>;
}
