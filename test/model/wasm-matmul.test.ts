/**
 * The BatchMatMul replacement against a float64 reference and, where the stock wasm kernel is right
 * (no broadcasting beyond equal batch counts), against the stock kernel: broadcast batch dims of
 * any rank, transposes, sizes off the SIMD widths, M = 1, empty dims, a ViT-MLP-sized product,
 * a reshaped right operand (the C++ operator cache is keyed by tensor id), memory, and gradients.
 */
import * as tf from '@tensorflow/tfjs';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/model/index.js';
import { rng } from '../helpers/tiny-backbone.js';
import { expectClose, matMulRef, memory, size, withStock } from './kernel-reference.js';

// float32 summation of k terms is within k·2⁻²⁴ of Σ|aᵢbᵢ|; the sizes here keep k ≤ 40.
const REL = 40 * 2 ** -24;

interface MmCase {
  aShape: number[];
  bShape: number[];
  ta: boolean;
  tb: boolean;
  seed: number;
}

/** An output batch shape (rank 0–3, sometimes with a 0), and each operand's: a suffix of it, some dims 1. */
const mmArb: fc.Arbitrary<MmCase> = fc
  .record({
    batch: fc.array(fc.oneof({ weight: 9, arbitrary: fc.integer({ min: 1, max: 3 }) }, { weight: 1, arbitrary: fc.constant(0) }), { maxLength: 3 }),
    dropA: fc.nat(3),
    dropB: fc.nat(3),
    onesA: fc.array(fc.boolean(), { minLength: 3, maxLength: 3 }),
    onesB: fc.array(fc.boolean(), { minLength: 3, maxLength: 3 }),
    // Around the SIMD widths (4, 8, 16) and their neighbours, and the degenerate sizes.
    m: fc.constantFrom(0, 1, 2, 3, 5, 8, 17),
    k: fc.constantFrom(0, 1, 3, 4, 7, 8, 9, 16, 33),
    n: fc.constantFrom(0, 1, 2, 4, 5, 12, 16, 19),
    ta: fc.boolean(),
    tb: fc.boolean(),
    seed: fc.nat(1 << 20),
  })
  .map((c) => {
    const own = (drop: number, ones: boolean[]) => c.batch.slice(Math.min(drop, c.batch.length)).map((d, i) => (ones[i] ? 1 : d));
    const [ba, bb] = [own(c.dropA, c.onesA), own(c.dropB, c.onesB)];
    return {
      aShape: [...ba, ...(c.ta ? [c.k, c.m] : [c.m, c.k])],
      bShape: [...bb, ...(c.tb ? [c.n, c.k] : [c.k, c.n])],
      ta: c.ta,
      tb: c.tb,
      seed: c.seed,
    };
  });

const data = (shape: number[], seed: number) => {
  const r = rng(seed);
  return Float32Array.from({ length: size(shape) }, () => r.normal());
};

function run(c: MmCase): { shape: number[]; data: Float32Array } {
  return tf.tidy(() => {
    const y = tf.matMul(tf.tensor(data(c.aShape, c.seed), c.aShape), tf.tensor(data(c.bShape, c.seed + 1), c.bShape), c.ta, c.tb);
    return { shape: y.shape, data: y.dataSync() as Float32Array };
  });
}

/** The stock kernel runs max(batchA, batchB) products without broadcasting, and traps on an empty batch. */
const stockSane = (c: MmCase) => {
  const [na, nb] = [size(c.aShape.slice(0, -2)), size(c.bShape.slice(0, -2))];
  const out = tf.broadcast_util.assertAndGetBroadcastShape(c.aShape.slice(0, -2), c.bShape.slice(0, -2));
  const k = c.ta ? c.aShape[c.aShape.length - 2] : c.aShape[c.aShape.length - 1];
  // K = 0 leaves its output uninitialised.
  return na === nb && size(out) === na && na > 0 && k > 0;
};

const outcomeOf = (f: () => unknown) => {
  try {
    return String(f());
  } catch (err) {
    return (err as Error).message;
  }
};

describe('wasm BatchMatMul replacement', () => {
  beforeAll(async () => {
    await initBackend('wasm');
  });

  it('equals the float64 reference (shape and values) for broadcast batches, transposes and odd or empty sizes; the stock kernel where it is right', () => {
    const cases = fc.sample(mmArb, { numRuns: 400, seed: 31 });
    const stock = withStock(() => cases.map((c) => (stockSane(c) ? run(c) : null)));
    const before = memory();
    for (const [i, c] of cases.entries()) {
      const what = JSON.stringify(c);
      const got = run(c);
      const ref = matMulRef(data(c.aShape, c.seed), c.aShape, data(c.bShape, c.seed + 1), c.bShape, c.ta, c.tb);
      expect(got.shape, what).toEqual(ref.shape);
      expectClose(got.data, ref.data, ref.scale, REL, what);
      const s = stock[i];
      if (s) {
        expect(got.shape, what).toEqual(s.shape);
        expectClose(got.data, s.data, ref.scale, 2 * REL, what);
      }
    }
    expect(memory()).toEqual(before);
    // The sample reaches the cases that matter.
    const batchOf = (s: number[]) => s.slice(0, -2);
    expect(cases.filter((c) => !stockSane(c) && size(c.aShape) * size(c.bShape) > 0).length).toBeGreaterThan(50);
    expect(cases.filter((c) => batchOf(c.aShape).length !== batchOf(c.bShape).length).length).toBeGreaterThan(100);
  });

  it('named broadcasts: [1,M,K]×[B,K,N], [B,1,M,K]×[B,H,K,N], [B,1,M,K]×[K,N] (transposed too), M = 1', () => {
    const named: MmCase[] = [
      { aShape: [1, 5, 7], bShape: [4, 7, 9], ta: false, tb: false, seed: 1 },
      { aShape: [3, 1, 6, 8], bShape: [3, 2, 8, 5], ta: false, tb: false, seed: 2 },
      { aShape: [3, 1, 8, 6], bShape: [3, 2, 5, 8], ta: true, tb: true, seed: 3 },
      { aShape: [3, 1, 6, 8], bShape: [8, 5], ta: false, tb: false, seed: 4 },
      { aShape: [2, 3, 1, 16], bShape: [3, 17, 16], ta: false, tb: true, seed: 5 },
      { aShape: [1, 1, 2, 3], bShape: [5, 3, 4], ta: false, tb: false, seed: 6 },
      { aShape: [1, 3, 2], bShape: [1, 1, 3, 4], ta: true, tb: false, seed: 7 },
    ];
    for (const c of named) {
      const got = run(c);
      const ref = matMulRef(data(c.aShape, c.seed), c.aShape, data(c.bShape, c.seed + 1), c.bShape, c.ta, c.tb);
      expect(got.shape, JSON.stringify(c)).toEqual(ref.shape);
      expectClose(got.data, ref.data, ref.scale, REL, JSON.stringify(c));
    }
  });

  it('K = 0 gives zeros, an empty batch an empty result (the stock kernel: uninitialised memory, a trap)', () => {
    const out = (a: number[], b: number[]) => tf.tidy(() => {
      const y = tf.matMul(tf.ones(a), tf.ones(b));
      return { shape: y.shape, data: Array.from(y.dataSync()) };
    });
    expect(out([2, 0], [0, 3])).toEqual({ shape: [2, 3], data: [0, 0, 0, 0, 0, 0] });
    expect(out([2, 2, 0], [2, 0, 1])).toEqual({ shape: [2, 2, 1], data: [0, 0, 0, 0] });
    expect(out([0, 2, 3], [3, 4])).toEqual({ shape: [0, 2, 4], data: [] });
    expect(out([2, 3], [0, 3, 4])).toEqual({ shape: [0, 2, 4], data: [] });
    expect(() => tf.matMul(tf.ones([2, 2, 3]), tf.ones([3, 3, 4]))).toThrow(/broadcast/);
    expect(() => tf.matMul(tf.ones([2, 3, 3]), tf.ones([2, 4, 4]))).toThrow(/inner shapes/);
    // Other dtypes stay with the stock kernel, which refuses them.
    const int32 = () => outcomeOf(() => tf.matMul(tf.ones([2, 3, 3], 'int32'), tf.ones([3, 2], 'int32'), true));
    expect(int32()).toEqual(withStock(int32));
    expect(int32()).toMatch(/non-float32/);
  });

  it('a right operand reshaped after use (same buffer id, other [K, N]) is not multiplied with the old shape’s cached weights', () => {
    const w = tf.tensor(Float32Array.from({ length: 24 }, (_, i) => i - 11), [6, 4]);
    const use = (a: number[], b: tf.Tensor, tb = false) => tf.tidy(() => Array.from(tf.matMul(tf.ones(a), b, false, tb).dataSync()));
    const first = use([3, 2, 6], w);
    const w2 = tf.reshape(w, [4, 6]);
    const second = use([3, 2, 4], w2);
    const fresh = tf.tensor(Float32Array.from({ length: 24 }, (_, i) => i - 11), [4, 6]);
    expect(second).toEqual(withStock(() => use([3, 2, 4], fresh)));
    expect(use([3, 2, 6], w)).toEqual(first);
    // Through a shared (Identity) buffer and a transposed use as well.
    const w3 = tf.reshape(tf.clone(w), [2, 12]);
    expect(use([2, 3, 2], w3)).toEqual(withStock(() => use([2, 3, 2], tf.reshape(fresh, [2, 12]))));
    expect(use([2, 3, 12], w3, true)).toEqual(withStock(() => use([2, 3, 12], tf.reshape(fresh, [2, 12]), true)));
    tf.dispose([w, w2, w3, fresh]);
  });

  it('a ViT-MLP-sized product [197,768]·[3072,768]ᵀ and M = 1 agree with the stock XNNPACK product', () => {
    const a = tf.randomNormal([197, 768], 0, 1, 'float32', 1);
    const b = tf.randomNormal([3072, 768], 0, 1, 'float32', 2);
    const bT = tf.transpose(b);
    const mine = tf.matMul(a, b, false, true);
    const row = tf.matMul(tf.slice(a, [5, 0], [1, 768]), bT, false, false);
    const rowT = tf.matMul(tf.reshape(tf.slice(a, [5, 0], [1, 768]), [768, 1]), b, true, true);
    const [stock, stockRow] = withStock(() => [tf.matMul(a, bT), tf.matMul(tf.slice(a, [5, 0], [1, 768]), bT)]);
    // Both run XNNPACK on the same operands: the same sums (ties within float32 rounding of √K·|a||b|).
    const tol = tf.scalar(768 * 2 ** -24 * 4 * Math.sqrt(768));
    const close = (x: tf.Tensor, y: tf.Tensor) => tf.tidy(() => tf.all(tf.lessEqual(tf.abs(tf.sub(x, y)), tol)).dataSync()[0]);
    expect(mine.shape).toEqual([197, 3072]);
    expect(close(mine, stock)).toBe(1);
    expect(rowT.shape).toEqual([1, 3072]);
    expect(close(row, stockRow)).toBe(1);
    expect(close(rowT, stockRow)).toBe(1);
    tf.dispose([a, b, bT, mine, row, rowT, stock, stockRow, tol]);
  });

  it('gradients through batched and transposed products equal the stock kernels’ (a tape with saved inputs), and leak nothing', () => {
    const shapes: Array<[number[], number[], boolean, boolean]> = [
      [[3, 5, 4], [3, 4, 6], false, false],
      [[2, 3, 4, 5], [2, 3, 6, 5], false, true],
      [[2, 7, 5], [2, 7, 3], true, false],
      [[5, 4], [6, 5], true, true],
    ];
    const grads = () =>
      shapes.map(([as, bs, ta, tb], i) => {
        const [a, b] = [tf.tensor(data(as, 50 + i), as), tf.tensor(data(bs, 60 + i), bs)];
        const w = tf.scalar(0.5 + i);
        const { value, grads: g } = tf.valueAndGrads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(tf.square(tf.matMul(x, y, ta, tb)), w)))([a, b]);
        const out = { value: value.dataSync()[0], da: g[0].dataSync() as Float32Array, db: g[1].dataSync() as Float32Array, shapes: g.map((t) => t.shape) };
        tf.dispose([a, b, w, value, ...g]);
        return out;
      });
    const stock = withStock(grads);
    const before = memory();
    for (let rep = 0; rep < 3; rep++) {
      grads().forEach((g, i) => {
        expect(g.shapes).toEqual(stock[i].shapes);
        expect(Math.abs(g.value - stock[i].value)).toBeLessThanOrEqual(1e-4 * Math.abs(stock[i].value));
        const scale = (v: Float32Array) => new Float32Array(v.length).fill(Math.max(...Array.from(v, Math.abs)));
        expectClose(g.da, stock[i].da, scale(stock[i].da), 1e-4, `da ${i}`);
        expectClose(g.db, stock[i].db, scale(stock[i].db), 1e-4, `db ${i}`);
      });
    }
    expect(memory()).toEqual(before);
  });
});
