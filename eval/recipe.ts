/**
 * The training recipe every method shares — the authors' VTAB-1k recipe scaled to a 2-core budget:
 * AdamW (weight decay 0.05, none on biases), batch 32, linear warm-up then cosine (per step, since
 * a run is only a few hundred steps), no augmentation (as the authors' VTAB runs; it also keeps
 * DTL's cached prefix valid across epochs). Only the learning rate differs per method, chosen on
 * a validation split of the 1,000 training images.
 */
import * as tf from '@tensorflow/tfjs';
import type { Backbone } from '../src/model/index.js';
import { grayBatch } from '../scripts/pretrain/pixels.js';
import { prng, shuffled, stepLr, type LabelledSet } from '../scripts/pretrain/train.js';

export interface Recipe {
  epochs: number;
  warmupEpochs: number;
  batchSize: number;
  weightDecay: number;
  /** Cosine floor as a fraction of the peak lr. */
  minLrFraction: number;
  seed: number;
}

export const DEFAULT_RECIPE: Recipe = { epochs: 10, warmupEpochs: 1, batchSize: 32, weightDecay: 0.05, minLrFraction: 0.01, seed: 7 };

/** The images at `rows` of a set, as the backbone's normalised NHWC input. */
export function pixelsOf(backbone: Backbone, set: LabelledSet, rows: readonly number[]): tf.Tensor4D {
  return grayBatch(set, rows, backbone.config);
}

/**
 * Runs the epochs: shuffles `rows` every epoch (seeded), sets the step's learning rate, calls
 * `step(batchRows, lr)` (which returns the batch loss). A last partial batch is dropped, as
 * PyTorch's drop_last; with 800 or 1,000 images and batch 32 that is ≤ 31 images an epoch.
 */
export function runEpochs(rows: readonly number[], recipe: Recipe, lr: number, step: (batch: number[], lr: number) => number): number[] {
  const rand = prng(recipe.seed);
  const perEpoch = Math.max(1, Math.floor(rows.length / recipe.batchSize));
  const total = perEpoch * recipe.epochs;
  const warmup = Math.round(recipe.warmupEpochs * perEpoch);
  const losses: number[] = [];
  let s = 0;
  for (let e = 0; e < recipe.epochs; e++) {
    const order = shuffled(rows.length, rand).map((i) => rows[i]);
    let sum = 0;
    for (let b = 0; b < perEpoch; b++) {
      const batch = order.slice(b * recipe.batchSize, (b + 1) * recipe.batchSize);
      sum += step(batch, stepLr(s++, total, warmup, lr, lr * recipe.minLrFraction));
    }
    losses.push(sum / perEpoch);
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
