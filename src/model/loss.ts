import * as tf from '@tensorflow/tfjs';

/**
 * Mean softmax cross-entropy over a batch of logits [n, classes] and integer labels. With
 * `weights` (one per row), the mean of weight × cross-entropy: the trainer passes its class
 * weights per row this way (normalised to mean 1 over the training set, so a balanced set's
 * weights are exactly 1 and its loss is unchanged). The divisor stays n, not Σ weights, so the
 * step size does not swing with how many minority rows a batch happens to draw.
 */
export function crossEntropy(logits: tf.Tensor2D, labels: Int32Array | number[], weights?: Float32Array | number[]): tf.Scalar {
  return tf.tidy(() => {
    const oneHot = tf.oneHot(tf.tensor1d(Array.from(labels), 'int32'), logits.shape[1]);
    const perRow = tf.neg(tf.sum(tf.mul(oneHot, tf.logSoftmax(logits)), 1));
    return tf.mean(weights === undefined ? perRow : tf.mul(perRow, tf.tensor1d(Array.from(weights), 'float32'))) as tf.Scalar;
  });
}
