import * as tf from '@tensorflow/tfjs';

/** Mean softmax cross-entropy over a batch of logits [n, classes] and integer labels. */
export function crossEntropy(logits: tf.Tensor2D, labels: Int32Array | number[]): tf.Scalar {
  return tf.tidy(() => {
    const oneHot = tf.oneHot(tf.tensor1d(Array.from(labels), 'int32'), logits.shape[1]);
    return tf.neg(tf.mean(tf.sum(tf.mul(oneHot, tf.logSoftmax(logits)), 1))) as tf.Scalar;
  });
}
