/**
 * The replacement wasm kernels return what the stock kernels return: Slice / GatherV2 / Identity
 * exactly, BatchMatMul within float32 rounding. Stock outputs are computed with the fixes
 * uninstalled (initBackend installs them), then the fixes are put back.
 */
import * as tf from '@tensorflow/tfjs';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { simdKernels } from '../../src/model/kernels/wasm-simd.js';
import { rng } from '../helpers/tiny-backbone.js';
import { gelu, initBackend, installWasmKernelFixes, uninstallWasmKernelFixes, wasmKernelFixesInstalled } from '../../src/model/index.js';

interface Case {
  shape: number[];
  begin: number[];
  size: number[];
  indices: number[];
  axis: number;
  dtype: 'float32' | 'int32';
}

const caseArb: fc.Arbitrary<Case> = fc
  .array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 4 })
  .chain((shape) =>
    fc.record({
      shape: fc.constant(shape),
      begin: fc.tuple(...shape.map((s) => fc.nat(s - 1))),
      axis: fc.nat(shape.length - 1),
      dtype: fc.constantFrom('float32' as const, 'int32' as const),
    }),
  )
  .chain((c) =>
    fc.record({
      shape: fc.constant(c.shape),
      begin: fc.constant(c.begin as number[]),
      // size −1 means "to the end", as tf.slice allows.
      size: fc.tuple(...c.shape.map((s, i) => fc.oneof(fc.integer({ min: 0, max: s - c.begin[i] }), fc.constant(-1)))),
      indices: fc.array(fc.nat(c.shape[c.axis] - 1), { minLength: 0, maxLength: 7 }),
      axis: fc.constant(c.axis),
      dtype: fc.constant(c.dtype),
    }),
  );

function run(c: Case): { slice: number[]; sliceShape: number[]; gather: number[]; gatherShape: number[] } {
  return tf.tidy(() => {
    const n = c.shape.reduce((a, b) => a * b, 1);
    const x = tf.tensor(Array.from({ length: n }, (_, i) => i * 1.5 - 7), c.shape, c.dtype);
    const s = tf.slice(x, c.begin, c.size);
    const g = tf.gather(x, tf.tensor1d(c.indices, 'int32'), c.axis);
    return { slice: Array.from(s.dataSync()), sliceShape: s.shape, gather: Array.from(g.dataSync()), gatherShape: g.shape };
  });
}

describe('wasm kernel fixes', () => {
  beforeAll(async () => {
    await initBackend('wasm');
  });

  it('Slice and GatherV2 give the stock kernels’ results (shapes, values, dtypes)', () => {
    expect(wasmKernelFixesInstalled()).toBe(true); // by initBackend('wasm')
    uninstallWasmKernelFixes();
    const cases = fc.sample(caseArb, { numRuns: 300, seed: 77 });
    const before = cases.map(run);
    const stock = ['Slice', 'GatherV2'].map((k) => tf.getKernel(k, 'wasm')!.kernelFunc);
    installWasmKernelFixes();
    expect(['Slice', 'GatherV2'].map((k) => tf.getKernel(k, 'wasm')!.kernelFunc)).not.toContain(stock[0]);
    expect(tf.getKernel('GatherV2', 'wasm')!.kernelFunc).not.toBe(stock[1]);
    installWasmKernelFixes(); // idempotent
    const after = cases.map(run);
    cases.forEach((c, i) => expect({ c, ...after[i] }).toEqual({ c, ...before[i] }));
  });

  it('is installed in place of the stock kernels, still rejects out-of-range indices, and leaks nothing', () => {
    const current = tf.getKernel('Slice', 'wasm')!.kernelFunc;
    installWasmKernelFixes();
    expect(tf.getKernel('Slice', 'wasm')!.kernelFunc).toBe(current); // a second install changes nothing
    const start = tf.memory().numTensors;
    expect(() =>
      tf.tidy(() => {
        const x = tf.tensor2d([[1, 2], [3, 4]]);
        return tf.gather(x, tf.tensor1d([2], 'int32'));
      }),
    ).toThrow(/not in \[0, 1\]/);
    expect(tf.memory().numTensors).toBe(start);
  });

  it('BatchMatMul equals a plain reference for batches, broadcasting and transposes (float32 rounding)', () => {
    const mmArb = fc.record({
      batch: fc.constantFrom<[number[], number[]]>([[], []], [[3], [3]], [[2, 3], [2, 3]], [[4], []], [[], [4]], [[1], [5]], [[5], [1]], [[2, 1], [2, 1]]),
      m: fc.integer({ min: 1, max: 9 }),
      k: fc.integer({ min: 1, max: 9 }),
      n: fc.integer({ min: 1, max: 9 }),
      ta: fc.boolean(),
      tb: fc.boolean(),
      seed: fc.nat(1000),
    });
    const numTensors = tf.memory().numTensors;
    for (const c of fc.sample(mmArb, { numRuns: 200, seed: 5 })) {
      const r = rng(c.seed);
      const [ba, bb] = c.batch;
      const aShape = [...ba, ...(c.ta ? [c.k, c.m] : [c.m, c.k])];
      const bShape = [...bb, ...(c.tb ? [c.n, c.k] : [c.k, c.n])];
      const a = Float32Array.from({ length: aShape.reduce((x, y) => x * y, 1) }, () => r.normal());
      const b = Float32Array.from({ length: bShape.reduce((x, y) => x * y, 1) }, () => r.normal());
      const got = tf.tidy(() => {
        const y = tf.matMul(tf.tensor(a, aShape), tf.tensor(b, bShape), c.ta, c.tb);
        return { shape: y.shape, data: y.dataSync() };
      });
      // Reference: batch element i of the output uses a's element (i mod |a batch|), same for b.
      const na = ba.reduce((x, y) => x * y, 1);
      const nb = bb.reduce((x, y) => x * y, 1);
      const batches = Math.max(na, nb);
      expect(got.shape, JSON.stringify(c)).toEqual([...(na >= nb ? ba : bb), c.m, c.n]);
      let err = 0;
      for (let i = 0; i < batches; i++) {
        const ao = (i % na) * c.m * c.k;
        const bo = (i % nb) * c.k * c.n;
        for (let p = 0; p < c.m; p++) {
          for (let q = 0; q < c.n; q++) {
            let sum = 0;
            for (let t = 0; t < c.k; t++) sum += a[ao + (c.ta ? t * c.m + p : p * c.k + t)] * b[bo + (c.tb ? q * c.k + t : t * c.n + q)];
            err = Math.max(err, Math.abs(sum - got.data[(i * c.m + p) * c.n + q]));
          }
        }
      }
      expect(err, JSON.stringify(c)).toBeLessThan(1e-5);
    }
    expect(tf.memory().numTensors).toBe(numTensors);
  });

  it('BatchMatMul runs attention-sized batches on XNNPACK: several times faster than the stock loop', () => {
    const a = tf.randomNormal([24, 65, 64]);
    const b = tf.randomNormal([24, 64, 65]);
    const time = () => {
      tf.matMul(a, b).dispose();
      const t0 = process.cpuUsage();
      for (let i = 0; i < 5; i++) tf.matMul(a, b).dataSync();
      const t = process.cpuUsage(t0);
      return t.user + t.system;
    };
    uninstallWasmKernelFixes();
    const stock = time();
    installWasmKernelFixes();
    const mine = time();
    a.dispose();
    b.dispose();
    // Measured ≈3–6× here; 1.5× leaves room for a loaded machine while still catching a fallback.
    expect(mine * 1.5).toBeLessThan(stock);
  });

  it('Identity shares the buffer (saved tensors cost no copy), and each tensor is freed independently', () => {
    const x = tf.tensor2d([[1, 2], [3, 4]]);
    const buffers = tf.engine().backend.numDataIds();
    const y = tf.clone(x);
    expect(tf.engine().backend.numDataIds()).toBe(buffers);
    x.dispose();
    expect(Array.from(y.dataSync())).toEqual([1, 2, 3, 4]);
    y.dispose();
    expect(tf.engine().backend.numDataIds()).toBe(buffers - 1);
    // A variable's assign swaps its buffer: an earlier clone keeps the old values.
    const v = tf.variable(tf.tensor1d([1, 2]));
    const snapshot = tf.clone(v);
    v.assign(tf.tensor1d([5, 6]));
    expect(Array.from(snapshot.dataSync())).toEqual([1, 2]);
    expect(Array.from(v.dataSync())).toEqual([5, 6]);
    snapshot.dispose();
    v.dispose();
  });

  it('GELU runs as one kernel (SIMD WebAssembly on the heap, JS for the last n mod 4) and matches the composed erf form and its gradient', () => {
    expect(tf.getKernel('DtlGelu', 'wasm')).toBeDefined();
    // Node 20's V8 runs 128-bit SIMD: the hand-assembled module must load here.
    expect(simdKernels((tf.backend() as unknown as { wasm: { asm: { memory: object } } }).wasm.asm.memory)).not.toBeNull();
    const composed = (t: tf.Tensor) => tf.mul(tf.mul(t, 0.5), tf.add(tf.erf(tf.mul(t, Math.SQRT1_2)), 1));
    const x = tf.linspace(-9, 9, 20001);
    const dy = tf.sin(x);
    const [mine, ref] = [gelu, composed].map((f) => tf.tidy(() => {
      const [y, g] = [f(x), tf.grad((t: tf.Tensor) => f(t))(x, dy)];
      return { y: y.dataSync(), g: g.dataSync() };
    }));
    const diff = (a: ArrayLike<number>, b: ArrayLike<number>) => Math.max(...Array.from(a, (v, i) => Math.abs(v - b[i])));
    expect(diff(mine.y, ref.y)).toBeLessThan(2e-6);
    expect(diff(mine.g, ref.g)).toBeLessThan(2e-6);
    x.dispose();
    dy.dispose();
  });
});
