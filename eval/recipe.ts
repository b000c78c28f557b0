/**
 * The training recipe every method shares: the service trainer's own defaults (src/train's
 * hyperparameters: AdamW, weight decay 0.05 with none on biases, batch 32, warm-up then cosine
 * per epoch) and its own schedule and seeding code (src/train/schedule.ts: learningRate, the
 * seeded shuffle of each epoch). DTL and DTL+ run through the trainer itself (methods/dtl.ts);
 * the baselines run their own small models through `runEpochs` below, which walks the epochs and
 * batches in exactly the trainer's order. Only the learning rate differs per method, chosen on
 * the validation split the trainer holds out.
 */
import * as tf from '@tensorflow/tfjs';
import type { Backbone } from '../src/model/index.js';
import { parseHyperparameters, type Hyperparameters } from '../src/train/hyperparameters.js';
import { learningRate, prng, shuffle, subSeed } from '../src/train/schedule.js';
import { grayBatch } from '../scripts/pretrain/pixels.js';
import type { LabelledSet } from '../scripts/pretrain/train.js';

/** The part of the trainer's hyperparameters the baselines share (no lr: chosen per method). */
export type Recipe = Pick<Hyperparameters, 'epochs' | 'warmupEpochs' | 'batchSize' | 'weightDecay' | 'minLr' | 'seed'>;

function recipeOf(h: Hyperparameters): Recipe {
  return { epochs: h.epochs, warmupEpochs: h.warmupEpochs, batchSize: h.batchSize, weightDecay: h.weightDecay, minLr: h.minLr, seed: h.seed };
}

/** The service's defaults, read from the trainer's schema (so the study follows them). */
export const DEFAULT_RECIPE: Recipe = recipeOf(parseHyperparameters({}));

/** The images at `rows` of a set, as the backbone's normalised NHWC input. */
export function pixelsOf(backbone: Backbone, set: LabelledSet, rows: readonly number[]): tf.Tensor4D {
  return grayBatch(set, rows, backbone.config);
}

/**
 * Runs `warmupEpochs + epochs` epochs the way src/train/trainer.ts does: epoch e's learning rate
 * is the trainer's `learningRate(e)`, its order the trainer's seeded shuffle of the (sorted)
 * training rows, batches in that order with the last one partial. `step(batchRows, lr)` returns
 * the batch's mean loss; the result is the mean training loss per epoch.
 */
export function runEpochs(rows: readonly number[], recipe: Recipe, lr: number, step: (batch: number[], lr: number) => number): number[] {
  const losses: number[] = [];
  const sorted = [...rows].sort((a, b) => a - b);
  for (let e = 0; e < recipe.warmupEpochs + recipe.epochs; e++) {
    const epochLr = learningRate(e, { lr, minLr: Math.min(recipe.minLr, lr), warmupEpochs: recipe.warmupEpochs, epochs: recipe.epochs });
    const order = shuffle([...sorted], prng(subSeed(recipe.seed, 100 + e)));
    let sum = 0;
    for (let b = 0; b < order.length; b += recipe.batchSize) {
      const batch = order.slice(b, b + recipe.batchSize);
      sum += step(batch, epochLr) * batch.length;
    }
    losses.push(sum / Math.max(1, order.length));
  }
  return losses;
}

/** Predicted class per row, in batches, from a function giving logits for pixels. */
export function predictRows(backbone: Backbone, set: LabelledSet, rows: readonly number[], logits: (pixels: tf.Tensor4D) => tf.Tensor2D, batch = 250): Int32Array {
  const out = new Int32Array(rows.length);
  for (let s = 0; s < rows.length; s += batch) {
    const part = rows.slice(s, s + batch);
    const arg = tf.tidy(() => {
      // The model core returns kept tensors (a tidy does not free them): dispose explicitly.
      const l = logits(pixelsOf(backbone, set, part));
      const a = tf.argMax(l, 1);
      l.dispose();
      return a;
    });
    out.set(arg.dataSync() as Int32Array, s);
    arg.dispose();
  }
  return out;
}

export function accuracyOf(predicted: Int32Array, set: LabelledSet, rows: readonly number[]): number {
  let ok = 0;
  rows.forEach((r, i) => {
    if (predicted[i] === set.labels[r]) ok++;
  });
  return rows.length === 0 ? 0 : ok / rows.length;
}

/** Head weight truncated-normal std 0.02 (the authors' init), bias 0. */
export function newHead(d: number, classes: number, seed: number): { w: tf.Variable<tf.Rank.R2>; b: tf.Variable<tf.Rank.R1> } {
  const rand = prng(seed);
  const data = new Float32Array(d * classes);
  for (let i = 0; i < data.length; ) {
    const z = Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
    if (Math.abs(z) <= 2) data[i++] = z * 0.02;
  }
  return tf.tidy(() => ({
    w: tf.variable(tf.tensor2d(data, [d, classes]), true) as tf.Variable<tf.Rank.R2>,
    b: tf.variable(tf.zeros([classes]), true) as tf.Variable<tf.Rank.R1>,
  }));
}

export const range = (n: number): number[] => [...Array(n).keys()];
