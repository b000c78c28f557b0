/**
 * The trainer's per-batch helpers around the model core: how many of a step's predictions (taken
 * from the logits its loss came from — a separate forward for training accuracy would cost a
 * third of a step) are right, and one evaluation pass of one or several adapters.
 */
import * as tf from '@tensorflow/tfjs';
import { crossEntropy, forwardSuffix, type Adapter, type Backbone, type PrefixState } from '../model/index.js';

export function countCorrect(predicted: Int32Array, labels: Int32Array): number {
  let correct = 0;
  for (let i = 0; i < labels.length; i++) if (predicted[i] === labels[i]) correct++;
  return correct;
}

/**
 * Predicted class per row, the summed cross-entropy and the logits [n × classes] of a batch (no gradient tape), for each
 * adapter: several run through one batched suffix (the search's candidates validate together).
 */
export function evalBatch(
  backbone: Backbone,
  adapters: Adapter[],
  state: PrefixState,
  labels: Int32Array,
): { predicted: Int32Array; lossSum: number; logits: Float32Array }[] {
  const rows = [...Array(labels.length).keys()];
  const all = forwardSuffix(
    backbone,
    state,
    adapters.map((adapter) => ({ adapter, rows })),
  );
  try {
    return all.map((logits) => {
      const arg = tf.argMax(logits, 1);
      const loss = crossEntropy(logits, labels);
      try {
        return { predicted: Int32Array.from(arg.dataSync()), lossSum: loss.dataSync()[0] * labels.length, logits: Float32Array.from(logits.dataSync()) };
      } finally {
        arg.dispose();
        loss.dispose();
      }
    });
  } finally {
    for (const l of all) l.dispose();
  }
}
