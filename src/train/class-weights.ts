/**
 * Class weighting for imbalanced data sets: each class's loss weight is the inverse of its share
 * of the training split, normalised so that the mean weight over the training images is 1 —
 * w_c = N / (C · n_c), sklearn's "balanced". A minority class of a 10:1 set then weighs as much in
 * the loss as the majority; a balanced set gets w_c = 1 exactly (N = C · n_c), so its training is
 * bit for bit what it was without weighting.
 *
 * Weighting rather than balanced sampling: it keeps the batch order and the prefix cache's
 * access pattern as they are, and needs no extra epochs to show each majority image once.
 */
import type { Hyperparameters } from './hyperparameters.js';

export interface ClassWeighting {
  mode: Hyperparameters['classWeights'];
  /** Per class, in label order (all 1 with mode 'none'). */
  weights: number[];
  /** Training images per class, in label order. */
  counts: number[];
}

export function classWeighting(mode: Hyperparameters['classWeights'], trainLabels: ArrayLike<number>, classes: number): ClassWeighting {
  const counts = new Array<number>(classes).fill(0);
  for (let i = 0; i < trainLabels.length; i++) counts[trainLabels[i]] += 1;
  const present = counts.filter((n) => n > 0).length;
  // A class absent from training never appears in a batch: its weight is moot, report 0.
  const weights = counts.map((n) => (mode === 'none' ? 1 : n === 0 ? 0 : trainLabels.length / (present * n)));
  return { mode, weights, counts };
}

/** Per-row weights of a batch, or undefined when every weight is 1 (the unweighted loss). */
export function rowWeights(w: ClassWeighting, labels: Int32Array): Float32Array | undefined {
  if (w.weights.every((x) => x === 1)) return undefined;
  return Float32Array.from(labels, (l) => w.weights[l]);
}
