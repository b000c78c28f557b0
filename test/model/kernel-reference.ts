/**
 * Shared by the wasm kernel tests: running code on the stock kernels, capturing a result (or the
 * error) exactly, and plain-JS references for where the stock wasm kernel itself is wrong.
 */
import * as tf from '@tensorflow/tfjs';
import { expect } from 'vitest';
import { installWasmKernelFixes, uninstallWasmKernelFixes } from '../../src/model/index.js';

/** f on the stock wasm kernels (the fixes, GELU's included, uninstalled), then the fixes back. */
export function withStock<T>(f: () => T): T {
  uninstallWasmKernelFixes();
  try {
    return f();
  } finally {
    installWasmKernelFixes();
  }
}

export const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** What an op returned, to the bit (float32 as its bit patterns: NaN, −0 and Inf compare exactly), or its error. */
export type Outcome = { shape: number[]; dtype: string; bits: number[] } | { error: string };

export function bits(t: tf.Tensor): number[] {
  const v = t.dataSync();
  return Array.from(v instanceof Float32Array ? new Uint32Array(v.buffer, v.byteOffset, v.length) : v);
}

export function outcome(f: () => tf.Tensor): Outcome {
  try {
    return tf.tidy(() => {
      const t = f();
      return { shape: t.shape, dtype: t.dtype, bits: bits(t) };
    });
  } catch (err) {
    return { error: (err as Error).message };
  }
}

/** Distinct values of the dtype, with float32's special values among them. */
export function values(n: number, dtype: 'float32' | 'int32' | 'bool', seed: number): number[] {
  const special = [NaN, -0, Infinity, -Infinity, 1e-45, -3.4e38];
  return Array.from({ length: n }, (_, i) => {
    const v = (i * 7919 + seed * 104729) % 65521;
    if (dtype === 'bool') return v % 2;
    if (dtype === 'int32') return v - 32760;
    return i % 11 === 5 ? special[(i + seed) % special.length] : (v - 32760) / 64;
  });
}

/** Row-major element offset of each index of `shape`, in order. */
function* indices(shape: readonly number[]): Generator<number[]> {
  const n = size(shape);
  const idx = new Array<number>(shape.length).fill(0);
  for (let i = 0; i < n; i++) {
    yield idx;
    for (let d = shape.length - 1; d >= 0 && ++idx[d] === shape[d]; d--) idx[d] = 0;
  }
}

const flat = (shape: readonly number[], idx: readonly number[]) => idx.reduce((o, v, d) => o * shape[d] + v, 0);

/** tf.gather's result as plain arrays (TensorFlow's definition, batchDims included). */
export function gatherRef(x: number[], xShape: number[], ind: number[], indShape: number[], axis: number, batchDims: number): { shape: number[]; data: number[] } {
  const shape = [...xShape.slice(0, axis), ...indShape.slice(batchDims), ...xShape.slice(axis + 1)];
  const data: number[] = [];
  const ir = indShape.length - batchDims;
  for (const o of indices(shape)) {
    const batch = o.slice(0, batchDims);
    const picked = ind[flat(indShape, [...batch, ...o.slice(axis, axis + ir)])];
    data.push(x[flat(xShape, [...o.slice(0, axis), picked, ...o.slice(axis + ir)])]);
  }
  return { shape, data };
}

/** a·b in float64 with any broadcasting of the batch dims, and Σ|aᵢ·bᵢ| per output (its rounding scale). */
export function matMulRef(a: Float32Array, aShape: number[], b: Float32Array, bShape: number[], ta: boolean, tb: boolean): { shape: number[]; data: Float64Array; scale: Float64Array } {
  const [ra, rb] = [aShape.length, bShape.length];
  const [m, k] = ta ? [aShape[ra - 1], aShape[ra - 2]] : [aShape[ra - 2], aShape[ra - 1]];
  const n = tb ? bShape[rb - 2] : bShape[rb - 1];
  const batch = tf.broadcast_util.assertAndGetBroadcastShape(aShape.slice(0, -2), bShape.slice(0, -2));
  const data = new Float64Array(size(batch) * m * n);
  const scale = new Float64Array(data.length);
  // The operand's batch index for an output batch index: its own dims, right-aligned, 1 broadcasting.
  const pick = (shape: number[], idx: number[]) => {
    const own = shape.slice(0, -2);
    return flat(own, own.map((s, d) => (s === 1 ? 0 : idx[idx.length - own.length + d])));
  };
  let o = 0;
  for (const idx of indices(batch)) {
    const ao = pick(aShape, idx) * m * k;
    const bo = pick(bShape, idx) * k * n;
    for (let p = 0; p < m; p++) {
      for (let q = 0; q < n; q++, o++) {
        for (let t = 0; t < k; t++) {
          const v = a[ao + (ta ? t * m + p : p * k + t)] * b[bo + (tb ? q * k + t : t * n + q)];
          data[o] += v;
          scale[o] += Math.abs(v);
        }
      }
    }
  }
  return { shape: [...batch, m, n], data, scale };
}

/** Every element within `rel`·scale of the reference (scale: the float32 rounding scale of each). */
export function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, scale: ArrayLike<number>, rel: number, what: string): void {
  expect(got.length, what).toBe(want.length);
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) / (scale[i] || 1e-30));
  expect(worst, what).toBeLessThanOrEqual(rel);
}

/** Tensors, bytes and backend buffers now, to compare after a loop of kernel calls. */
export function memory(): { numTensors: number; numBytes: number; buffers: number } {
  const m = tf.memory();
  return { numTensors: m.numTensors, numBytes: m.numBytes, buffers: tf.engine().backend.numDataIds() };
}
