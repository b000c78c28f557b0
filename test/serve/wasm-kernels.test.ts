/**
 * The replacement wasm Slice / GatherV2 kernels return exactly what the stock kernels return.
 * Stock outputs are computed first, then the fixes are installed (process-wide, this file only).
 */
import * as tf from '@tensorflow/tfjs';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/model/index.js';
import { installWasmKernelFixes } from '../../src/serve/wasm-kernels.js';

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
});
