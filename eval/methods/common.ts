/** Small pieces the methods share: one AdamW step over a set of variables. */
import * as tf from '@tensorflow/tfjs';
import { AdamW, crossEntropy, measurePeakBytes } from '../../src/model/index.js';

/** Computes grads of `loss` for `vars`, applies AdamW (no decay where `decays` says so), returns the loss. */
export function adamwStep(opt: AdamW, vars: tf.Variable[], decays: (v: tf.Variable) => boolean, loss: () => tf.Scalar): number {
  const { value, grads } = tf.variableGrads(loss, vars);
  try {
    const items = vars.filter((v) => grads[v.name] !== undefined);
    opt.applyGradients(items.map((v) => ({ variable: v, grad: grads[v.name], decay: decays(v) })));
    return value.dataSync()[0];
  } finally {
    value.dispose();
    for (const g of Object.values(grads)) g.dispose();
  }
}

export function ce(logits: tf.Tensor2D, labels: number[]): tf.Scalar {
  return crossEntropy(logits, labels);
}

export const sizeOf = (vars: readonly tf.Tensor[]): number => vars.reduce((s, v) => s + v.size, 0);

/**
 * Peak tensor bytes of `step` (one optimisation step returning its loss), measured on a second
 * call so that optimiser moments, allocated by the first, are not counted as step memory.
 */
export async function stepPeak(step: () => number): Promise<number> {
  step();
  const { peakBytes, result } = await measurePeakBytes(() => tf.scalar(step()));
  result.dispose();
  return peakBytes;
}
