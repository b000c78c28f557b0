/**
 * The wasm GELU kernel and its gradient kernel at the values the model rarely sees: NaN, ±Inf,
 * huge |x|, subnormals, the erf clamp (|x| = 4√2) and the exp cut-off (x²/2 = 87). The reference is
 * the analytic GELU = x·Φ(x) and its derivative Φ(x) + x·φ(x), evaluated in float64 as written (so
 * ±Inf·0 is NaN, as the composed tf form that every other backend runs gives); the SIMD loop and
 * the JS loop for the last n mod 4 values must agree to the bit.
 */
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { gelu, initBackend } from '../../src/model/index.js';
import { rng } from '../helpers/tiny-backbone.js';
import { memory, withStock } from './kernel-reference.js';

/** erfc(z) in float64 to ~1e-15: a positive series below 3, a continued fraction above. */
function erfc(z: number): number {
  if (Number.isNaN(z)) return NaN;
  if (z < 0) return 2 - erfc(-z);
  if (z < 3) {
    let term = z;
    let sum = z;
    for (let n = 1; n < 200 && term > 1e-17 * sum; n++) sum += term *= (2 * z * z) / (2 * n + 1);
    return 1 - ((2 / Math.sqrt(Math.PI)) * Math.exp(-z * z) * sum);
  }
  let f = z;
  for (let n = 80; n >= 1; n--) f = z + n / 2 / f;
  return Math.exp(-z * z) / Math.sqrt(Math.PI) / f;
}
const cdf = (x: number) => 0.5 * erfc(-x / Math.SQRT2);
const geluRef = (x: number) => x * cdf(x);
const gradRef = (x: number) => cdf(x) + x * (Math.exp(-0.5 * x * x) / Math.sqrt(2 * Math.PI));

/** The values under test, rounded to float32. */
function testValues(): Float32Array {
  const r = rng(42);
  const special = [NaN, Infinity, -Infinity, 0, -0, 1e-45, -1e-45, 1e-30, 3.4e38, -3.4e38, 1e30, -1e30, 1e18, -1e18, 1e10, -1e10, 100, -100];
  const edges = [4 * Math.SQRT2, Math.sqrt(174), 20, 6].flatMap((e) => [-1, 1].flatMap((s) => [-1e-3, -1e-6, 0, 1e-6, 1e-3].map((d) => s * e + d)));
  const random = Array.from({ length: 800 }, (_, i) => (i % 2 ? r.normal() * [0.1, 1, 3, 10][(i >> 1) % 4] : (r.uniform() - 0.5) * 40));
  return Float32Array.from([...special, ...edges, ...random]);
}

/** GELU and its gradient (via tf.grad, so through the registered gradient) of xs, with dy = 1. */
function geluAndGrad(xs: Float32Array): { y: Float32Array; g: Float32Array } {
  return tf.tidy(() => {
    const x = tf.tensor1d(xs);
    const y = gelu(x).dataSync() as Float32Array;
    const g = tf.grad((t: tf.Tensor) => gelu(t))(x).dataSync() as Float32Array;
    return { y, g };
  });
}

/** Each value as the whole of a 3-element tensor: all of it in the JS loop, none in SIMD. */
function viaTail(xs: Float32Array): { y: Float32Array; g: Float32Array } {
  const y = new Float32Array(xs.length);
  const g = new Float32Array(xs.length);
  for (let i = 0; i < xs.length; i += 3) {
    const part = geluAndGrad(xs.slice(i, i + 3));
    y.set(part.y, i);
    g.set(part.g, i);
  }
  return { y, g };
}

/** got[i] within tol(i) of want(i), NaN exactly where want is NaN, ±Inf exactly where want is. */
function expectMatches(xs: Float32Array, got: Float32Array, want: (i: number) => number, tol: (i: number) => number, what: string): void {
  const bad: string[] = [];
  xs.forEach((x, i) => {
    const w = want(i);
    const ok = Number.isFinite(w) ? Math.abs(got[i] - w) <= tol(i) : Object.is(got[i], w);
    if (!ok) bad.push(`${what}(${x}) = ${got[i]}, want ${w}`);
  });
  expect(bad.slice(0, 5)).toEqual([]);
}

const bitsOf = (v: Float32Array) => Array.from(new Uint32Array(v.buffer, v.byteOffset, v.length), (b, i) => (Number.isNaN(v[i]) ? 'NaN' : b));

describe('wasm GELU kernels', () => {
  const xs = testValues();
  // Every value through each path: all in the SIMD loop (length a multiple of 4), all in the JS loop.
  const paths: Record<'simd' | 'tail', { y: Float32Array; g: Float32Array }> = {} as never;

  beforeAll(async () => {
    await initBackend('wasm');
    const padded = Float32Array.from([...xs, ...new Array((4 - (xs.length % 4)) % 4).fill(0)]);
    const simd = geluAndGrad(padded);
    paths.simd = { y: simd.y.subarray(0, xs.length), g: simd.g.subarray(0, xs.length) };
    paths.tail = viaTail(xs);
  });

  it('the SIMD loop and the JS loop (last n mod 4) give the same bits, GELU and gradient', () => {
    expect(bitsOf(paths.tail.y)).toEqual(bitsOf(paths.simd.y));
    expect(bitsOf(paths.tail.g)).toEqual(bitsOf(paths.simd.g));
  });

  it.each(['simd', 'tail'] as const)('GELU (%s) is x·Φ(x) within the float32 erf’s 3e-7·max(1, |x|); NaN and ±Inf where the formula gives them', (path) => {
    const { y } = paths[path];
    expectMatches(xs, y, (i) => geluRef(xs[i]), (i) => 3e-7 * Math.max(1, Math.abs(xs[i])), 'gelu');
    // Far out GELU is exactly x or −0 (Φ saturates), never a positive or large value on the left.
    expect(Array.from(y.subarray(0, 3))).toEqual([NaN, Infinity, NaN]);
    const far = xs.subarray(8, 18);
    expect(Array.from(y.subarray(8, 18))).toEqual(Array.from(far, (x) => (x > 0 ? x : -0)));
  });

  it.each(['simd', 'tail'] as const)('the gradient (%s) is Φ(x) + x·φ(x) within 5e-7: 0 or 1 for huge |x|, NaN at ±Inf and NaN', (path) => {
    const { g } = paths[path];
    expectMatches(xs, g, (i) => gradRef(xs[i]), () => 5e-7, 'gelu’');
    expect(Array.from(g.subarray(0, 18))).toEqual([NaN, NaN, NaN, 0.5, 0.5, 0.5, 0.5, 0.5, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0]);
  });

  it('agrees with the composed form the other backends run, NaN for NaN, gradient with dy included', () => {
    const dy = Float32Array.from(xs, (_, i) => ((i * 37) % 11) - 5);
    const run = () =>
      tf.tidy(() => {
        const x = tf.tensor1d(xs);
        const [y, g] = [gelu(x), tf.grad((t: tf.Tensor) => gelu(t))(x, tf.tensor1d(dy))];
        return { y: y.dataSync() as Float32Array, g: g.dataSync() as Float32Array };
      });
    const composed = withStock(run); // with the kernels uninstalled, gelu() is the composed erf form
    const mine = run();
    expect(tf.getKernel('DtlGelu', 'wasm')).toBeDefined();
    const nan = (v: Float32Array) => Array.from(v, Number.isNaN);
    expect(nan(mine.y)).toEqual(nan(composed.y));
    // Both within their float32 erf of the reference, so within the sum of the two of each other.
    expectMatches(xs, mine.y, (i) => composed.y[i], (i) => 1e-6 * Math.max(1, Math.abs(xs[i])), 'gelu vs composed');
    // Autodiff of the composed form overflows at |x| ≈ 3.4e38 (0.5·x·dy = Inf, × exp(−x²/2) = 0:
    // NaN); there the reference is the analytic value. Everywhere else, the composed gradient.
    const overflowed = xs.map((x, i) => (Number.isFinite(x) && Number.isNaN(composed.g[i]) ? 1 : 0));
    expect(overflowed.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(2);
    const want = (i: number) => (overflowed[i] ? dy[i] * gradRef(xs[i]) : composed.g[i]);
    expectMatches(xs, mine.g, want, (i) => 5e-6 * Math.abs(dy[i]), 'gelu’ vs composed');
  });

  it('int32 input takes the composed form (the kernel is float32-only) instead of throwing', () => {
    const x = tf.tensor1d([-3, -1, 0, 2, 5], 'int32');
    const y = gelu(x);
    const ref = withStock(() => gelu(x));
    expect(y.dtype).toBe('float32');
    expect(Array.from(y.dataSync())).toEqual(Array.from(ref.dataSync()));
    tf.dispose([x, y, ref]);
  });

  it('forward and backward, repeated under tidy and tf.grad, leave tensors, bytes and buffers at baseline', () => {
    const x = tf.tensor3d(xs.slice(18, 18 + 2 * 5 * 7), [2, 5, 7]);
    gelu(x).dispose();
    const before = memory();
    for (let i = 0; i < 10; i++) {
      tf.tidy(() => {
        gelu(x);
      });
      tf.grad((t: tf.Tensor) => tf.sum(tf.mul(gelu(t), gelu(t))))(x).dispose();
    }
    expect(memory()).toEqual(before);
    x.dispose();
  });
});
