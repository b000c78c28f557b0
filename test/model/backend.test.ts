import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors.js';
import { initBackend } from '../../src/model/index.js';
import { maxAbsDiff } from './expect.js';

/** Plain-JS reference: C = op(A)·op(B) for row-major 2-D arrays. */
function mm(a: number[][], b: number[][]): number[][] {
  return a.map((row) => b[0].map((_, j) => row.reduce((s, v, k) => s + v * b[k][j], 0)));
}
const T = (a: number[][]) => a[0].map((_, j) => a.map((r) => r[j]));

describe('backend selection', () => {
  it('uses wasm when asked, and is idempotent', async () => {
    const logs: string[] = [];
    const first = initBackend('wasm', (m) => logs.push(m));
    expect(initBackend('wasm')).toBe(first);
    expect(await first).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
    expect(logs).toEqual(['tfjs backend: wasm (tfjs-backend-wasm)']);
  });

  it("'auto' falls through the missing native packages to wasm", async () => {
    const logs: string[] = [];
    expect(await initBackend('auto', (m) => logs.push(m))).toBe('wasm');
    expect(logs.at(-1)).toMatch(/tfjs backend: wasm/);
  });

  it("'tensorflow' without tfjs-node is a clear configuration error", async () => {
    const err = await initBackend('tensorflow').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).code).toBe('config_invalid');
    expect((err as AppError).message).toMatch(/@tensorflow\/tfjs-node-gpu: not installed; @tensorflow\/tfjs-node: not installed/);
    expect(tf.getBackend()).toBe('wasm');
  });

  it.each([
    [false, false],
    [false, true],
    [true, false],
    [true, true],
  ])('the BatchMatMul gradient is correct on the wasm kernels (transposeA=%s, transposeB=%s)', async (ta, tb) => {
    await initBackend('wasm');
    const A = [[1, 2, 3], [4, 5, 6]]; // used as 2×3 (or its transpose 3×2)
    const B = [[0.5, -1], [2, 0], [1, 3]]; // 3×2
    const a = ta ? T(A) : A;
    const b = tb ? T(B) : B;
    const W = [[1, -2], [0.5, 3]]; // weights of the output, 2×2
    const [da, db] = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(tf.matMul(x, y, ta, tb), tf.tensor2d(W))))([tf.tensor2d(a), tf.tensor2d(b)]);
    // d/dA of Σ W ⊙ (A·B) is W·Bᵀ, d/dB is Aᵀ·W; transposed operands get transposed gradients.
    const gA = mm(W, T(B));
    const gB = mm(T(A), W);
    expect(maxAbsDiff(da.dataSync(), (ta ? T(gA) : gA).flat())).toBeLessThan(1e-5);
    expect(maxAbsDiff(db.dataSync(), (tb ? T(gB) : gB).flat())).toBeLessThan(1e-5);
    da.dispose();
    db.dispose();
  });

  it('the BatchMatMul gradient handles batched operands', async () => {
    await initBackend('wasm');
    const a = tf.randomNormal([3, 4, 5], 0, 1, 'float32', 1);
    const b = tf.randomNormal([3, 5, 2], 0, 1, 'float32', 2);
    const [da, db] = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.matMul(x, y)))([a, b]);
    // With all-ones upstream gradient: dA[n,i,k] = Σ_j B[n,k,j], dB[n,k,j] = Σ_i A[n,i,k].
    const expectA = tf.tidy(() => tf.tile(tf.sum(b, 2, true).reshape([3, 1, 5]), [1, 4, 1]));
    const expectB = tf.tidy(() => tf.tile(tf.sum(a, 1, true).reshape([3, 5, 1]), [1, 1, 2]));
    expect(maxAbsDiff(da.dataSync(), expectA.dataSync())).toBeLessThan(1e-5);
    expect(maxAbsDiff(db.dataSync(), expectB.dataSync())).toBeLessThan(1e-5);
    for (const t of [a, b, da, db, expectA, expectB]) t.dispose();
  });
});
