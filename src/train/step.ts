/**
 * One optimisation step and one evaluation pass on a prefix batch. The step is the model core's
 * trainStep plus the batch's correct-prediction count, taken from the same logits (a separate
 * forward for training accuracy would cost a third of a step).
 */
import * as tf from '@tensorflow/tfjs';
import { crossEntropy, forwardSuffix, trainStepDetailed, type AdamW, type Adapter, type Backbone, type PrefixState } from '../model/index.js';

export function trainBatch(
  backbone: Backbone,
  adapter: Adapter,
  optimizer: AdamW,
  state: PrefixState,
  labels: Int32Array,
  tapeBlocks: number,
): { loss: number; correct: number } {
  // Block-wise back-propagation with the last `tapeBlocks` blocks on one tape (see the model's
  // train-blockwise.ts); the predictions come from the logits the loss was computed from.
  const { loss, predicted } = trainStepDetailed({ backbone, adapter, optimizer, state, labels, tapeBlocks });
  let correct = 0;
  for (let i = 0; i < labels.length; i++) if (predicted[i] === labels[i]) correct++;
  return { loss, correct };
}

/** Predicted class per row and the summed cross-entropy of a batch (no gradient tape). */
export function evalBatch(
  backbone: Backbone,
  adapter: Adapter,
  state: PrefixState,
  labels: Int32Array,
): { predicted: Int32Array; lossSum: number } {
  const rows = [...Array(labels.length).keys()];
  const [logits] = forwardSuffix(backbone, state, [{ adapter, rows }]);
  try {
    const arg = tf.argMax(logits, 1);
    const loss = crossEntropy(logits, labels);
    try {
      return { predicted: Int32Array.from(arg.dataSync()), lossSum: loss.dataSync()[0] * labels.length };
    } finally {
      arg.dispose();
      loss.dispose();
    }
  } finally {
    logits.dispose();
  }
}
