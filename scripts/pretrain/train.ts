/**
 * The pretraining loop: a ViT from scratch plus a linear classifier on exactly the pooled feature
 * DTL uses (mean of the patch tokens, then the final LayerNorm), so that a transfer method sees a
 * feature that was trained to be linearly useful. AdamW, per-step linear warm-up then cosine,
 * label smoothing, shift/flip augmentation. The head is thrown away; the backbone is kept.
 */
import * as tf from '@tensorflow/tfjs';
import { mulberry32 } from '../../src/model/adapter.js';
import { AdamW } from '../../src/model/optim.js';
import { linear } from '../../src/model/layers.js';
import { createTrainableVit, type TrainableVit, type VitShape } from '../../src/model/vit-trainable.js';
import { grayBatch, type GrayImages } from './pixels.js';

export interface LabelledSet extends GrayImages {
  /** Class index (0..classes−1) per image. */
  labels: Int32Array;
}

export interface PretrainOptions {
  shape: Omit<VitShape, 'mean' | 'std'>;
  /** Normalisation written to preprocessor_config.json (grey replicated to 3 channels). */
  mean: number;
  std: number;
  classes: number;
  epochs: number;
  batchSize: number;
  lr: number;
  minLr: number;
  /** Warm-up length in epochs (may be fractional; counted in steps). */
  warmupEpochs: number;
  weightDecay: number;
  labelSmoothing: number;
  shift: number;
  flip: boolean;
  seed: number;
  log?: (line: string) => void;
}

export interface EpochLog {
  epoch: number;
  /** Learning rate at the epoch's last step. */
  lr: number;
  loss: number;
  trainAcc: number;
  valAcc: number;
  imgPerSec: number;
  seconds: number;
}

export interface PretrainResult {
  vit: TrainableVit;
  epochs: EpochLog[];
  steps: number;
  wallSeconds: number;
}

/** The model core's seeded generator: the same sequence the service's trainer uses for a seed. */
export const prng = mulberry32;

export function shuffled(n: number, rand: () => number): number[] {
  const a = [...Array(n).keys()];
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/** Learning rate at `step` of `total`: linear warm-up over `warmup` steps, then cosine to minLr. */
export function stepLr(step: number, total: number, warmup: number, lr: number, minLr: number): number {
  if (step < warmup) return (lr * (step + 1)) / warmup;
  const t = (step - warmup) / Math.max(1, total - warmup);
  return minLr + 0.5 * (lr - minLr) * (1 + Math.cos(Math.PI * Math.min(1, t)));
}

/** Cross-entropy with label smoothing ε: targets (1−ε)·onehot + ε/C. */
export function smoothedCrossEntropy(logits: tf.Tensor2D, labels: Int32Array | number[], eps: number): tf.Scalar {
  return tf.tidy(() => {
    const c = logits.shape[1];
    const target = tf.add(tf.mul(tf.oneHot(tf.tensor1d(Array.from(labels), 'int32'), c), 1 - eps), eps / c);
    return tf.neg(tf.mean(tf.sum(tf.mul(target, tf.logSoftmax(logits)), 1))) as tf.Scalar;
  });
}

/** Accuracy of vit + head over a labelled set, in batches (no tape). */
export function accuracy(vit: TrainableVit, headW: tf.Tensor2D, headB: tf.Tensor1D, set: LabelledSet, norm: { mean: number[]; std: number[] }, batch = 250): number {
  const n = set.labels.length;
  let correct = 0;
  for (let s = 0; s < n; s += batch) {
    const idx = [...Array(Math.min(batch, n - s)).keys()].map((i) => s + i);
    const pred = tf.tidy(() => {
      const x = grayBatch(set, idx, norm);
      return tf.argMax(linear(vit.features(x), headW, headB), 1);
    });
    const p = pred.dataSync();
    pred.dispose();
    idx.forEach((i, j) => {
      if (p[j] === set.labels[i]) correct++;
    });
  }
  return n === 0 ? 0 : correct / n;
}

export interface Classifier {
  headW: tf.Variable<tf.Rank.R2>;
  headB: tf.Variable<tf.Rank.R1>;
}

/** Trains from scratch; returns the trained ViT and the head (caller disposes both). */
export function pretrain(train: LabelledSet, val: LabelledSet, o: PretrainOptions): PretrainResult & Classifier {
  const log = o.log ?? (() => {});
  const norm = { mean: [o.mean, o.mean, o.mean], std: [o.std, o.std, o.std] };
  const vit = createTrainableVit({ ...o.shape, mean: norm.mean as [number, number, number], std: norm.std as [number, number, number] }, o.seed);
  const d = o.shape.width;
  // Zero head: the first steps shape the features through a neutral classifier.
  // tidy frees the zeros; the variables (which share their data) survive it.
  const headW = tf.tidy(() => tf.variable(tf.zeros([d, o.classes]), true)) as tf.Variable<tf.Rank.R2>;
  const headB = tf.tidy(() => tf.variable(tf.zeros([o.classes]), true)) as tf.Variable<tf.Rank.R1>;
  const vars = [...vit.variables(), headW, headB];
  const decays = (v: tf.Variable) => v === headW || vit.decays(v);
  const opt = new AdamW({ lr: o.lr, weightDecay: o.weightDecay });
  const rand = prng(o.seed ^ 0x5eed);
  const n = train.labels.length;
  const stepsPerEpoch = Math.floor(n / o.batchSize);
  const total = stepsPerEpoch * o.epochs;
  const warmup = Math.round(o.warmupEpochs * stepsPerEpoch);
  const epochs: EpochLog[] = [];
  const t0 = Date.now();
  let step = 0;
  try {
    for (let e = 0; e < o.epochs; e++) {
      const order = shuffled(n, rand);
      const te = Date.now();
      let lossSum = 0;
      let correct = 0;
      for (let b = 0; b < stepsPerEpoch; b++) {
        const idx = order.slice(b * o.batchSize, (b + 1) * o.batchSize);
        const labels = idx.map((i) => train.labels[i]);
        opt.lr = stepLr(step, total, warmup, o.lr, o.minLr);
        const x = grayBatch(train, idx, norm, { shift: o.shift, flip: o.flip, rand });
        let predicted: tf.Tensor | undefined;
        const { value, grads } = tf.variableGrads(() => {
          const logits = linear(vit.features(x), headW, headB);
          predicted = tf.keep(tf.argMax(logits, 1));
          return smoothedCrossEntropy(logits, labels, o.labelSmoothing);
        }, vars);
        x.dispose();
        opt.applyGradients(vars.map((v) => ({ variable: v, grad: grads[v.name], decay: decays(v) })));
        lossSum += value.dataSync()[0];
        const p = predicted!.dataSync();
        labels.forEach((l, j) => {
          if (p[j] === l) correct++;
        });
        predicted!.dispose();
        value.dispose();
        for (const g of Object.values(grads)) g.dispose();
        step++;
        if (b % 50 === 49) log(`  epoch ${e + 1} step ${b + 1}/${stepsPerEpoch} loss ${(lossSum / (b + 1)).toFixed(4)} ${((((b + 1) * o.batchSize) / (Date.now() - te)) * 1000).toFixed(1)} img/s`);
      }
      const trainSeconds = (Date.now() - te) / 1000;
      const valAcc = accuracy(vit, headW, headB, val, norm);
      const entry: EpochLog = {
        epoch: e + 1,
        lr: opt.lr,
        loss: lossSum / stepsPerEpoch,
        trainAcc: correct / (stepsPerEpoch * o.batchSize),
        valAcc,
        imgPerSec: (stepsPerEpoch * o.batchSize) / trainSeconds,
        seconds: (Date.now() - te) / 1000,
      };
      epochs.push(entry);
      log(`epoch ${entry.epoch}/${o.epochs} lr ${entry.lr.toExponential(2)} loss ${entry.loss.toFixed(4)} train ${(entry.trainAcc * 100).toFixed(2)}% val ${(valAcc * 100).toFixed(2)}% ${entry.imgPerSec.toFixed(1)} img/s ${entry.seconds.toFixed(0)} s`);
    }
  } catch (err) {
    vit.dispose();
    headW.dispose();
    headB.dispose();
    throw err;
  } finally {
    opt.dispose();
  }
  return { vit, headW, headB, epochs, steps: step, wallSeconds: (Date.now() - t0) / 1000 };
}
