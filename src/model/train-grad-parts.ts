/**
 * The pieces both gradient paths of a training step share (train-blockwise.ts: the blocks on
 * tfjs; train-frozen.ts: the frozen blocks on the backbone's engine): the result type, the
 * vector–Jacobian surrogate, the loss under a tape, the pre-stage's gradients and the sink that
 * sums each variable's gradient.
 */
import * as tf from '@tensorflow/tfjs';
import { crossEntropy } from './loss.js';
import type { Stage } from './suffix.js';
import type { TrainableSuffix } from './suffix-grouped.js';

export interface BlockwiseResult {
  /** Σ over groups of each group's mean cross-entropy (one group: the mean). */
  loss: number;
  /** The logits the loss came from, [rows, classes] (owned by the caller). */
  logits: tf.Tensor2D;
  /** Gradient per variable the loss reaches (owned by the caller). */
  grads: Map<tf.Variable, tf.Tensor>;
  /** Arg-max class of each row's logits (the same logits the loss was computed from). */
  predicted: Int32Array;
}

/** Σ out ⊙ d_out: its gradient w.r.t. a stage's inputs is the vector–Jacobian product. */
export function surrogate(out: Stage, dx: tf.Tensor, dh: tf.Tensor | null): tf.Scalar {
  const sx = tf.sum(tf.mul(out.x, dx)) as tf.Scalar;
  return out.h && dh ? tf.add(sx, tf.sum(tf.mul(out.h, dh))) : sx;
}

/**
 * The loss under one tape: `lastX` runs whatever of the suffix is taped and returns its x, then
 * the head and the (weighted) cross-entropy. Gradients w.r.t. `xs`, in order (owned by the caller).
 */
export function lossGradients(
  suffix: TrainableSuffix,
  lastX: () => tf.Tensor3D,
  xs: tf.Tensor[],
  labels: Int32Array | number[],
  weights: Float32Array | undefined,
): { loss: number; predicted: Int32Array; logits: tf.Tensor2D; grads: tf.Tensor[] } {
  let predictedT: tf.Tensor | null = null;
  let logitsT: tf.Tensor2D | null = null;
  try {
    const r = tf.engine().gradients(
      () => {
        const logits = suffix.logits(lastX());
        predictedT = tf.keep(tf.argMax(logits, 1));
        logitsT = tf.keep(logits);
        const ce = crossEntropy(logits, labels, weights);
        return suffix.groups === 1 ? ce : tf.mul(ce, suffix.groups);
      },
      xs,
      undefined,
      true,
    );
    const loss = r.value.dataSync()[0];
    r.value.dispose();
    const predicted = Int32Array.from((predictedT as tf.Tensor | null)?.dataSync() ?? []);
    return { loss, predicted, logits: logitsT!, grads: r.grads };
  } catch (err) {
    (logitsT as tf.Tensor | null)?.dispose();
    throw err;
  } finally {
    (predictedT as tf.Tensor | null)?.dispose();
  }
}

/** Pre-stage: only the reads of the prefix inputs (and the addition after block split−1). */
export function preStageGradients(stages: TrainableSuffix['stages'], dx: tf.Tensor | null, dh: tf.Tensor | null, accumulate: (v: tf.Variable, g: tf.Tensor | undefined) => void): void {
  const preVars = stages.preVariables();
  if (preVars.length === 0 || !dx) return;
  const r = tf.engine().gradients(() => surrogate(stages.pre(), dx, dh), preVars, undefined, true);
  r.value.dispose();
  preVars.forEach((v, j) => accumulate(v, r.grads[j]));
}

/** Gradient bookkeeping shared by both paths: one summed gradient per variable. */
export function gradientSink(): { grads: Map<tf.Variable, tf.Tensor>; accumulate(v: tf.Variable, g: tf.Tensor | undefined): void } {
  const grads = new Map<tf.Variable, tf.Tensor>();
  return {
    grads,
    accumulate(v, g) {
      if (!g) return;
      const prev = grads.get(v);
      grads.set(v, tf.keep(prev ? tf.add(prev, g) : g));
      if (prev) {
        prev.dispose();
        g.dispose();
      }
    },
  };
}
