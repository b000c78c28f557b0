/**
 * One optimisation step and one evaluation pass on a prefix batch. The step is the model core's
 * trainStep plus the batch's correct-prediction count, taken from the same logits (a separate
 * forward for training accuracy would cost a third of a step).
 */
import * as tf from '@tensorflow/tfjs';
import { crossEntropy, forwardSuffix, type AdamW, type Adapter, type Backbone, type PrefixState } from '../model/index.js';

function correctCount(logits: tf.Tensor2D, labels: tf.Tensor1D): tf.Scalar {
  return tf.sum(tf.cast(tf.equal(tf.argMax(logits, 1), labels), 'int32'));
}

export function trainBatch(
  backbone: Backbone,
  adapter: Adapter,
  optimizer: AdamW,
  state: PrefixState,
  labels: Int32Array,
): { loss: number; correct: number } {
  const rows = [...Array(labels.length).keys()];
  const vars = adapter.trainableVariables();
  const labelT = tf.tensor1d(labels, 'int32');
  let correct: tf.Scalar | undefined;
  try {
    const { value, grads } = tf.variableGrads(() => {
      const [logits] = forwardSuffix(backbone, state, [{ adapter, rows }]);
      try {
        correct = tf.keep(tf.tidy(() => correctCount(logits, labelT)));
        return crossEntropy(logits, labels);
      } finally {
        logits.dispose();
      }
    }, vars);
    try {
      // A variable the loss does not reach has no gradient and is left alone, as in trainStep.
      const items = vars.filter((v) => grads[v.name] !== undefined);
      optimizer.applyGradients(items.map((v) => ({ variable: v, grad: grads[v.name], decay: !adapter.isBias(v) })));
      return { loss: value.dataSync()[0], correct: correct!.dataSync()[0] };
    } finally {
      value.dispose();
      for (const g of Object.values(grads)) g.dispose();
    }
  } finally {
    labelT.dispose();
    correct?.dispose();
  }
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
