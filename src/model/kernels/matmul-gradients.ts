/**
 * The gradient of the bare _FusedMatMul kernel, registered by install.ts. tfjs-core registers none
 * (tf.fused.matMul brings a custom one that always computes every input's gradient, a frozen
 * weight's included: one extra matMul per layer in every backward pass). layers.ts `linear` calls
 * the kernel with a linear activation and no transposes; this gradient computes only what is
 * asked for.
 *
 * BatchMatMul keeps tfjs-core's own gradient. A replacement with explicit transposes once made a
 * wasm training step ≈2× faster, when the stock wasm kernel ran transposed operands in a scalar
 * loop; since kernels/wasm-matmul.ts puts those on XNNPACK too, the stock gradient measured the
 * same (CPU time within the noise, the same peak bytes) and handles broadcast batch dims, which
 * the replacement did not.
 */
import * as tf from '@tensorflow/tfjs';

/** [.., r, c] → [.., c, r]. */
function swap(t: tf.Tensor): tf.Tensor {
  const perm = t.shape.map((_, i) => i);
  const r = perm.length;
  [perm[r - 2], perm[r - 1]] = [perm[r - 1], perm[r - 2]];
  return tf.transpose(t, perm);
}

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
