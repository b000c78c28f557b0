/**
 * The SIMD product loop (wasm-gemm.ts) on the wasm backend's heap: exactly the float32 sum it
 * documents (terms in order p = 0, 1, …, each product and sum rounded), through both column
 * blocks (16 and 4 wide), a left operand read through transposed strides, m = 1, k = 1; and, through
 * tf.matMul, the adapters' product shapes that wasm-matmul.ts now sends to it, against a float64
 * reference and the stock kernels, without leaking.
 */
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/model/index.js';
import { wasmInternals } from '../../src/model/kernels/tfjs-internals.js';
import { gemmKernel, type GemmKernel } from '../../src/model/kernels/wasm-gemm.js';
import { rng } from '../helpers/tiny-backbone.js';
import { expectClose, matMulRef, memory, size, withStock } from './kernel-reference.js';

const f32 = Math.fround;
const data = (n: number, seed: number) => {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => r.normal());
};

/** out = A·B summed as the loop sums: acc ← fround(acc + fround(A(i,p)·B[p,j])) for p = 0, 1, …. */
function sequentialRef(a: Float32Array, b: Float32Array, m: number, k: number, n: number, transposed: boolean): Float32Array {
  const out = new Float32Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let acc = 0;
      for (let p = 0; p < k; p++) acc = f32(acc + f32((transposed ? a[p * m + i] : a[i * k + p]) * b[p * n + j]));
      out[i * n + j] = acc;
    }
  }
  return out;
}

describe('SIMD product loop (wasm-gemm.ts)', () => {
  let gemm: GemmKernel;
  let offset: (t: tf.Tensor) => number;
  beforeAll(async () => {
    await initBackend('wasm');
    const backend = wasmInternals(tf.engine().backend);
    gemm = gemmKernel(backend.wasm.asm.memory!)!;
    offset = (t) => backend.dataIdMap.get(t.dataId)!.memoryOffset;
  });

  it('the engine runs it (SIMD WebAssembly on the backend heap)', () => {
    expect(gemm).not.toBeNull();
  });

  it.each([
    [1, 1, 4, false],
    [3, 5, 16, false],
    [2, 7, 20, true], // a 16-wide block and a 4-wide one
    [17, 33, 68, true],
    [5, 1, 12, false],
    [32, 16, 16, false],
    [64, 544, 16, true],
  ])('m=%i k=%i n=%i (A transposed: %s) gives exactly the sequential float32 sum', (m, k, n, transposed) => {
    const av = data(m * k, m * 1000 + k);
    const bv = data(k * n, n * 7 + 1);
    const a = tf.tensor(av, transposed ? [k, m] : [m, k]);
    const b = tf.tensor(bv, [k, n]);
    // A guard band either side of the output: the loop writes exactly m·n floats.
    const out = tf.fill([m * n + 8], 7);
    const [sai, sap] = transposed ? [4, m * 4] : [k * 4, 4];
    gemm.gemm(offset(a), offset(b), offset(out) + 16, m, k, n, sai, sap);
    const got = out.dataSync() as Float32Array;
    expect(Array.from(got.subarray(0, 4))).toEqual([7, 7, 7, 7]);
    expect(Array.from(got.subarray(4 + m * n))).toEqual([7, 7, 7, 7]);
    expect(Array.from(got.subarray(4, 4 + m * n))).toEqual(Array.from(sequentialRef(av, bv, m, k, n, transposed)));
    tf.dispose([a, b, out]);
  });

  it("tf.matMul on a grouped step's product shapes agrees with float64 and the stock kernels, and frees what it makes", () => {
    const cases: Array<{ a: number[]; b: number[]; ta: boolean; tb: boolean }> = [
      { a: [8, 544, 64], b: [8, 544, 16], ta: true, tb: false }, // reads' weight gradients
      { a: [8, 544, 64], b: [8, 64, 16], ta: false, tb: false },
      { a: [8, 544, 16], b: [8, 64, 16], ta: false, tb: true }, // right operand transposed: materialised
      { a: [64, 32, 16], b: [64, 16, 16], ta: false, tb: false }, // DTL+ conv products
      { a: [64, 32, 16], b: [64, 32, 16], ta: true, tb: false },
      { a: [544, 64], b: [544, 128], ta: true, tb: false }, // n > 64, transposed left operand
      { a: [544, 64], b: [64, 16], ta: false, tb: false }, // one untransposed product, n ≤ 64
      { a: [3, 1, 6, 8], b: [8, 12], ta: false, tb: false }, // shared right operand: one call for all rows
      { a: [2, 1, 8, 6], b: [3, 8, 4], ta: true, tb: false }, // broadcast batch dims (the stock kernel gets these wrong)
    ];
    const run = () =>
      cases.map((c, i) =>
        tf.tidy(() => {
          const av = data(size(c.a), i);
          const bv = data(size(c.b), i + 100);
          return tf.matMul(tf.tensor(av, c.a), tf.tensor(bv, c.b), c.ta, c.tb).dataSync() as Float32Array;
        }),
      );
    const stock = withStock(run);
    const before = memory();
    const got = run();
    expect(memory()).toEqual(before);
    cases.forEach((c, i) => {
      const ref = matMulRef(data(size(c.a), i), c.a, data(size(c.b), i + 100), c.b, c.ta, c.tb);
      const k = c.ta ? c.a[c.a.length - 2] : c.a[c.a.length - 1];
      expectClose(got[i], ref.data, ref.scale, k * 2 ** -24, JSON.stringify(c));
      if (size(c.a.slice(0, -2)) === size(c.b.slice(0, -2)) || c.b.length === 2) expectClose(got[i], stock[i], ref.scale, 2 * k * 2 ** -24, JSON.stringify(c));
    });
  });
});
