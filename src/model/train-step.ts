/**
 * One optimisation step of a DTL adapter — the one entry point for training it (the trainer,
 * `dtl-host train` and the evaluation study all call trainStep). The prefix state is a constant
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
import type { AdamW } from './optim.js';
import { disposePrefix, runPrefix, splitPoint, type PrefixState } from './prefix.js';
import { checkSuffixGroups } from './suffix.js';
import { blockwiseGradients } from './train-blockwise.js';

export interface TrainStepArgs {
  backbone: Backbone;
  adapter: Adapter;
  optimizer: AdamW;
  /** Prefix of the batch (any split ≤ the adapter's); row i has label labels[i]. */
  state: PrefixState;
  labels: Int32Array | number[];
  /**
   * Activation checkpointing: the last `tapeBlocks` suffix blocks keep their activations on one
   * tape with the head; earlier suffix blocks are re-run one at a time in the backward pass.
   * 0 recomputes every block (least memory); unset tapes the whole suffix (no recomputation).
   */
  tapeBlocks?: number;
  /** Loss weight of each row (class weighting); unset = 1 for every row. */
  weights?: Float32Array;
}

export interface TrainStepResult {
  loss: number;
  /** Arg-max class per row of the logits the loss came from. */
  predicted: Int32Array;
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

/** Trains the CSN + head on one batch; gradients flow through the suffix only. */
export function trainStep({ backbone, adapter, optimizer, state, labels, tapeBlocks, weights }: TrainStepArgs): TrainStepResult {
  checkLabels(labels, state.x.shape[0], adapter.spec.labels.length);
  trainableVariables(adapter);
  // Adapter/prefix compatibility, before any work.
  checkSuffixGroups(backbone, state, [{ adapter, rows: [0] }]);
  if (weights !== undefined && weights.length !== labels.length) throw new AppError('internal', `${weights.length} weights for ${labels.length} labels`);
  const r = blockwiseGradients(backbone, adapter, state, labels, tapeBlocks, weights);
  try {
    apply(adapter, optimizer, r.grads);
  } finally {
    for (const g of r.grads.values()) g.dispose();
  }
  return { loss: r.loss, predicted: r.predicted };
}

/** The same step with the whole forward, from pixels, under one gradient tape (baseline). Returns the loss. */
export function trainStepFullTape(args: Omit<TrainStepArgs, 'state' | 'tapeBlocks'> & { pixels: tf.Tensor4D }): number {
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
