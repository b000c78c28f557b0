/**
 * One optimisation step of a DTL adapter. The prefix state is a constant computed outside the
 * gradient tape, so back-propagation (and the activations it must keep) covers only the suffix
 * blocks — DTL's memory saving. trainStepFullTape is the baseline with the tape over every block
 * (what a LoRA-style method pays), kept for measurements.
 */
import * as tf from '@tensorflow/tfjs';
import { AppError } from '../errors.js';
import type { Adapter } from './adapter.js';
import type { Backbone } from './backbone.js';
import { checkSuffixGroups, disposePrefix, forwardSuffix, runPrefix, splitPoint, type PrefixState } from './forward.js';
import { blockwiseGradients } from './train-blockwise.js';
import { crossEntropy } from './loss.js';
import type { AdamW } from './optim.js';

export { measurePeakBytes } from './memory.js';

export interface TrainStepArgs {
  backbone: Backbone;
  adapter: Adapter;
  optimizer: AdamW;
  /** Prefix of the batch (any split ≤ the adapter's); row i has label labels[i]. */
  state: PrefixState;
  labels: Int32Array | number[];
  /**
   * Back-propagate block by block, re-running each suffix block (activation checkpointing):
   * peak memory of one block instead of the whole suffix, for about one extra suffix forward.
   * Same as tapeBlocks: 0.
   */
  recompute?: boolean;
  /**
   * Activation checkpointing with a taped tail (train-blockwise.ts): the last `tapeBlocks` suffix
   * blocks keep their activations on one tape with the head, the earlier suffix blocks are
   * recomputed one at a time in the backward. Unset (and recompute unset): one tape over the whole
   * suffix.
   */
  tapeBlocks?: number;
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

function step(adapter: Adapter, optimizer: AdamW, loss: () => tf.Scalar): number {
  return stepWith(adapter, optimizer, loss).loss;
}

function stepWith(adapter: Adapter, optimizer: AdamW, loss: () => tf.Scalar): { loss: number } {
  const vars = adapter.trainableVariables();
  if (vars.length === 0) throw new AppError('internal', 'adapter is not trainable (load it with trainable: true)');
  const { value, grads } = tf.variableGrads(loss, vars);
  try {
    // A variable the loss does not reach (a read after the last addition) has no gradient; like
    // PyTorch with grad None, it is left alone (no moments, no decay).
    const items = vars.filter((v) => grads[v.name] !== undefined);
    optimizer.applyGradients(items.map((v) => ({ variable: v, grad: grads[v.name], decay: !adapter.isBias(v) })));
    return { loss: value.dataSync()[0] };
  } finally {
    value.dispose();
    for (const g of Object.values(grads)) g.dispose();
  }
}

function logitsLoss(run: () => tf.Tensor2D, labels: Int32Array | number[]): tf.Scalar {
  const logits = run();
  try {
    return crossEntropy(logits, labels);
  } finally {
    logits.dispose();
  }
}

/** Trains the CSN + head on one batch; gradients flow through the suffix only. Returns the loss. */
export function trainStep(args: TrainStepArgs): number {
  return trainStepDetailed(args).loss;
}

/** trainStep, also returning each row's predicted class (from the logits the loss came from). */
export function trainStepDetailed({ backbone, adapter, optimizer, state, labels, recompute, tapeBlocks }: TrainStepArgs): TrainStepResult {
  const n = state.x.shape[0];
  checkLabels(labels, n, adapter.spec.labels.length);
  if (recompute || tapeBlocks !== undefined) {
    if (adapter.trainableVariables().length === 0) throw new AppError('internal', 'adapter is not trainable (load it with trainable: true)');
    // Same checks as the taped path (adapter/prefix compatibility) before any work.
    checkSuffixGroups(backbone, state, [{ adapter, rows: [0] }]);
    const r = blockwiseGradients(backbone, adapter, state, labels, { tapeBlocks: recompute ? 0 : tapeBlocks });
    try {
      optimizer.applyGradients([...r.grads].map(([variable, grad]) => ({ variable, grad, decay: !adapter.isBias(variable) })));
    } finally {
      for (const g of r.grads.values()) g.dispose();
    }
    return { loss: r.loss, predicted: r.predicted };
  }
  const rows = [...Array(n).keys()];
  let predicted: tf.Tensor | undefined;
  try {
    const { loss } = stepWith(adapter, optimizer, () =>
      logitsLoss(() => {
        const [logits] = forwardSuffix(backbone, state, [{ adapter, rows }]);
        predicted = tf.keep(tf.argMax(logits, 1));
        return logits;
      }, labels),
    );
    return { loss, predicted: Int32Array.from(predicted!.dataSync()) };
  } finally {
    predicted?.dispose();
  }
}

/** The same step with the whole forward, from pixels, under the gradient tape (memory baseline). */
export function trainStepFullTape(args: Omit<TrainStepArgs, 'state'> & { pixels: tf.Tensor4D }): number {
  const { backbone, adapter, optimizer, pixels, labels } = args;
  const n = pixels.shape[0];
  checkLabels(labels, n, adapter.spec.labels.length);
  const rows = [...Array(n).keys()];
  return step(adapter, optimizer, () =>
    logitsLoss(() => {
      const state = runPrefix(backbone, pixels, splitPoint(adapter.spec, backbone.config.depth));
      try {
        return forwardSuffix(backbone, state, [{ adapter, rows }])[0];
      } finally {
        disposePrefix(state);
      }
    }, labels),
  );
}
