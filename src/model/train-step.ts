/**
 * One optimisation step of a DTL adapter — or of K adapters at once, each on its own group of
 * rows of one prefix batch, through ONE suffix (suffix-grouped.ts: K candidates of a recipe
 * search share the cache reads and run K× larger ops) — the one entry point for training (the
 * trainer, `dtl-host train` and the evaluation study all call trainStep). One adapter over the
 * whole batch is the K = 1 case and runs suffix.ts's single-adapter stages (no stacking at all). The prefix state is a constant
 * computed outside the gradient tape, so back-propagation (and the activations it must keep)
 * covers only the suffix blocks — DTL's memory saving — and within the suffix `tapeBlocks` trades
 * memory for recomputation (train-blockwise.ts).
 *
 * trainStepFullTape is not a way to train: it is the baseline the memory figures are measured
 * against (the tape over every block, what a LoRA-style method pays) and an independent check of
 * the step's gradients (plain tf.variableGrads over the whole forward).
 */
import * as tf from '@tensorflow/tfjs';
import { AppError } from '../errors.js';
import type { Adapter } from './adapter.js';
import type { Backbone } from './backbone.js';
import { forwardSuffix } from './forward.js';
import { crossEntropy } from './loss.js';
import { frozenBlocksOf } from './native/attach.js';
import type { AdamW } from './optim.js';
import { disposePrefix, gatherPrefix, runPrefix, splitPoint, type PrefixState } from './prefix.js';
import { checkSuffixGroups } from './suffix.js';
import { groupedSuffix, singleSuffix } from './suffix-grouped.js';
import { blockwiseGradients } from './train-blockwise.js';

/** One adapter of a grouped step: its optimizer, the prefix rows it trains on and their labels. */
export interface TrainGroup {
  adapter: Adapter;
  optimizer: AdamW;
  /** Rows of the prefix batch (may repeat across groups); every group equally many. */
  rows: number[];
  labels: Int32Array | number[];
  /** Loss weight of each of its rows (class weighting); unset = 1 for every row. */
  weights?: Float32Array;
}

interface StepCommon {
  backbone: Backbone;
  /** Prefix of the batch (any split ≤ every adapter's). */
  state: PrefixState;
  /**
   * Activation checkpointing: the last `tapeBlocks` suffix blocks keep their activations on one
   * tape with the head; earlier suffix blocks are re-run one at a time in the backward pass.
   * 0 recomputes every block (least memory); unset tapes the whole suffix (no recomputation).
   */
  tapeBlocks?: number;
  /** Loss weight of each row (class weighting) of a single-adapter step; unset = 1 for every row. */
  weights?: Float32Array;
}

/** One adapter over every row of the batch (row i has label labels[i]), or `groups`. */
export type TrainStepArgs = StepCommon &
  ({ adapter: Adapter; optimizer: AdamW; labels: Int32Array | number[]; groups?: never } | { groups: TrainGroup[]; adapter?: never });

export interface GroupStepResult {
  /** Mean cross-entropy of the group's rows. */
  loss: number;
  /** Arg-max class per row of the logits the loss came from. */
  predicted: Int32Array;
}

export interface TrainStepResult extends GroupStepResult {
  /** Per group, in order (one entry for a single adapter, equal to the top level). */
  groups: GroupStepResult[];
}

function checkLabels(labels: Int32Array | number[], n: number, classes: number): void {
  if (labels.length !== n) throw new AppError('internal', `${labels.length} labels for a batch of ${n}`);
  for (const l of labels) {
    if (!Number.isInteger(l) || l < 0 || l >= classes) throw new AppError('internal', `label index ${l} is outside 0..${classes - 1}`);
  }
}

function trainableVariables(adapter: Adapter): tf.Variable[] {
  const vars = adapter.trainableVariables();
  if (vars.length === 0) throw new AppError('internal', 'adapter is not trainable (load it with trainable: true)');
  return vars;
}

/**
 * AdamW on the gradients the loss reaches. A variable it does not reach (a read after the last
 * addition) has no gradient; like PyTorch with grad None, it is left alone (no moments, no decay).
 */
function apply(adapter: Adapter, optimizer: AdamW, grads: Map<tf.Variable, tf.Tensor>): void {
  optimizer.applyGradients([...grads].map(([variable, grad]) => ({ variable, grad, decay: !adapter.isBias(variable) })));
}

function checkWeights(weights: Float32Array | undefined, rows: number): void {
  if (weights !== undefined && weights.length !== rows) throw new AppError('internal', `${weights.length} loss weights for ${rows} rows`);
}

/** Trains the CSN + head on one batch; gradients flow through the suffix only. */
export function trainStep(args: TrainStepArgs): TrainStepResult {
  const { backbone, state, tapeBlocks } = args;
  if (args.groups === undefined) {
    const { adapter, optimizer, labels } = args;
    checkLabels(labels, state.x.shape[0], adapter.spec.labels.length);
    trainableVariables(adapter);
    // Adapter/prefix compatibility, before any work.
    checkSuffixGroups(backbone, state, [{ adapter, rows: [0] }]);
    checkWeights(args.weights, labels.length);
    const r = blockwiseGradients(backbone, singleSuffix(backbone, adapter, state), state, labels, tapeBlocks, args.weights, frozenBlocksOf(backbone));
    r.logits.dispose();
    try {
      apply(adapter, optimizer, r.grads);
    } finally {
      for (const g of r.grads.values()) g.dispose();
    }
    return { loss: r.loss, predicted: r.predicted, groups: [{ loss: r.loss, predicted: r.predicted }] };
  }
  const groups = args.groups;
  if (groups.length === 0) throw new AppError('internal', 'trainStep needs at least one group');
  if (new Set(groups.map((g) => g.adapter)).size !== groups.length) throw new AppError('internal', 'an adapter appears in two groups');
  for (const g of groups) {
    checkLabels(g.labels, g.rows.length, g.adapter.spec.labels.length);
    trainableVariables(g.adapter);
  }
  checkSuffixGroups(backbone, state, groups);
  if (backbone.swin) return swinGroupsOneByOne(args, groups);
  const labels = groups.flatMap((g) => Array.from(g.labels));
  for (const g of groups) checkWeights(g.weights, g.labels.length);
  // One weight per row of every group (1 where a group has none), so each group's share of the loss is what its own step would see.
  const weights = groups.some((g) => g.weights !== undefined) ? Float32Array.from(groups.flatMap((g) => (g.weights === undefined ? Array.from(g.labels, () => 1) : Array.from(g.weights)))) : undefined;
  const suffix = groupedSuffix(backbone, groups.map((g) => g.adapter), state, groups.map((g) => g.rows));
  const r = blockwiseGradients(backbone, suffix, state, labels, tapeBlocks, weights, frozenBlocksOf(backbone));
  const B = groups[0].rows.length;
  let perGroup: GroupStepResult[];
  try {
    // Each group's own mean loss, from the logits the step used (no second forward).
    const losses = tf.tidy(() => {
      const oneHot = tf.oneHot(tf.tensor1d(labels, 'int32'), r.logits.shape[1]);
      const unweighted = tf.neg(tf.sum(tf.mul(oneHot, tf.logSoftmax(r.logits)), 1));
      const rowLoss = weights === undefined ? unweighted : tf.mul(unweighted, tf.tensor1d(weights, 'float32'));
      return tf.mean(tf.reshape(rowLoss, [groups.length, B]), 1);
    });
    const values = losses.dataSync();
    losses.dispose();
    perGroup = groups.map((_, k) => ({ loss: values[k], predicted: r.predicted.slice(k * B, (k + 1) * B) }));
    // Each adapter's variables only ever get its own group's gradient (the loss is a sum over groups).
    for (const g of groups) {
      const own = new Set(g.adapter.trainableVariables());
      apply(g.adapter, g.optimizer, new Map([...r.grads].filter(([v]) => own.has(v))));
    }
  } finally {
    r.logits.dispose();
    for (const g of r.grads.values()) g.dispose();
  }
  const mean = perGroup.reduce((a, g) => a + g.loss, 0) / perGroup.length;
  return { loss: mean, predicted: r.predicted, groups: perGroup };
}

/** The same step with the whole forward, from pixels, under one gradient tape (baseline). Returns the loss. */
/**
 * A grouped step on a Swin: each group's own single-adapter step on its rows (the grouped suffix,
 * suffix-grouped.ts, is written for the ViT's fixed token grid). Same losses and updates as the
 * grouped step gives, without sharing the blocks' matMuls across groups.
 */
function swinGroupsOneByOne(args: StepCommon, groups: TrainGroup[]): TrainStepResult {
  const perGroup: GroupStepResult[] = [];
  for (const g of groups) {
    const sub = gatherPrefix(args.state, g.rows);
    try {
      const r = trainStep({ backbone: args.backbone, state: sub, tapeBlocks: args.tapeBlocks, adapter: g.adapter, optimizer: g.optimizer, labels: g.labels, ...(g.weights ? { weights: g.weights } : {}) });
      perGroup.push({ loss: r.loss, predicted: r.predicted });
    } finally {
      disposePrefix(sub);
    }
  }
  const predicted = new Int32Array(perGroup.reduce((a, g) => a + g.predicted.length, 0));
  let at = 0;
  for (const g of perGroup) {
    predicted.set(g.predicted, at);
    at += g.predicted.length;
  }
  return { loss: perGroup.reduce((a, g) => a + g.loss, 0) / perGroup.length, predicted, groups: perGroup };
}

export function trainStepFullTape(args: {
  backbone: Backbone;
  adapter: Adapter;
  optimizer: AdamW;
  labels: Int32Array | number[];
  pixels: tf.Tensor4D;
}): number {
  const { backbone, adapter, optimizer, pixels, labels } = args;
  const n = pixels.shape[0];
  checkLabels(labels, n, adapter.spec.labels.length);
  const vars = trainableVariables(adapter);
  const rows = [...Array(n).keys()];
  const { value, grads } = tf.variableGrads(() => {
    const state = runPrefix(backbone, pixels, splitPoint(adapter.spec, backbone.config.depth));
    let logits: tf.Tensor2D;
    try {
      logits = forwardSuffix(backbone, state, [{ adapter, rows }])[0];
    } finally {
      disposePrefix(state);
    }
    try {
      return crossEntropy(logits, labels);
    } finally {
      logits.dispose();
    }
  }, vars);
  try {
    apply(adapter, optimizer, new Map(vars.filter((v) => grads[v.name] !== undefined).map((v) => [v, grads[v.name]])));
    return value.dataSync()[0];
  } finally {
    value.dispose();
    for (const g of Object.values(grads)) g.dispose();
  }
}
