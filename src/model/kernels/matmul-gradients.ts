/**
 * Gradients for the two matMul kernels the model runs, registered by install.ts.
 *
 * _FusedMatMul: tfjs-core registers no gradient for the bare kernel (tf.fused.matMul brings a
 * custom one that always computes every input's gradient, a frozen weight's included: one extra
 * matMul per layer in every backward pass). layers.ts `linear` calls the kernel with a linear
 * activation and no transposes; this gradient computes only what is asked for.
 *
 * BatchMatMul: the same maths as tfjs-core's own gradient, written with explicit transposes and
 * plain products instead of matMul's transpose flags.
 */
import * as tf from '@tensorflow/tfjs';

/** [.., r, c] → [.., c, r]. */
function swap(t: tf.Tensor): tf.Tensor {
  const perm = t.shape.map((_, i) => i);
  const r = perm.length;
  [perm[r - 2], perm[r - 1]] = [perm[r - 1], perm[r - 2]];
  return tf.transpose(t, perm);
}

export const batchMatMulGradient: tf.GradConfig = {
  kernelName: tf.BatchMatMul,
  inputsToSave: ['a', 'b'],
  gradFunc: (dy, saved, attrs) => {
    const [a, b] = saved;
    const d = dy as tf.Tensor;
    const { transposeA, transposeB } = attrs as unknown as { transposeA: boolean; transposeB: boolean };
    const mm = (x: tf.Tensor, y: tf.Tensor) => tf.matMul(x, y);
    if (!transposeA && !transposeB) return { a: () => mm(d, swap(b)), b: () => mm(swap(a), d) };
    if (!transposeA && transposeB) return { a: () => mm(d, b), b: () => mm(swap(d), a) };
    if (transposeA && !transposeB) return { a: () => mm(b, swap(d)), b: () => mm(a, d) };
    return { a: () => mm(swap(b), swap(d)), b: () => mm(swap(d), swap(a)) };
  },
};

export const fusedMatMulGradient: tf.GradConfig = {
  kernelName: '_FusedMatMul',
  inputsToSave: ['a', 'b'],
  gradFunc: (dy, saved, attrs) => {
    const [a, b] = saved;
    const d = dy as tf.Tensor;
    const { transposeA, transposeB, activation } = attrs as unknown as { transposeA: boolean; transposeB: boolean; activation: string };
    if (transposeA || transposeB || activation !== 'linear') {
      throw new Error(`no gradient for _FusedMatMul with transposeA=${transposeA}, transposeB=${transposeB}, activation=${activation}`);
    }
    return {
      a: () => tf.matMul(d, swap(b)),
      b: () => tf.matMul(swap(a), d),
      bias: () => tf.sum(d, [...Array(d.rank - 1).keys()]),
    };
  },
};
