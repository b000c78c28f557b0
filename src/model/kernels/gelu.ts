/**
 * GELU as one kernel on the wasm backend.
 *
 * The composed form 0.5·x·(1 + erf(x/√2)) costs five ops, and the wasm Erf kernel calls libm's
 * double-precision erf per element: ≈25–40 ns per float here, against ≈0.5 ns for a SIMD multiply —
 * GELU alone was ≈10–25 % of a ViT forward. This kernel does the whole GELU in one pass over the
 * heap with a rational erf (the float32 approximation XLA and Eigen use: x·P(x²)/Q(x²) on x
 * clamped to [−4, 4]; within 1e-7 of libm's erf everywhere) — as 128-bit SIMD WebAssembly on the
 * heap itself (wasm-simd.ts), with a JS loop for the last few floats or where SIMD is missing.
 *
 * The gradient, dy·(Φ(x) + x·φ(x)) with Φ the standard normal CDF and φ its density, is one pass
 * too (DtlGeluGrad). Backends without the kernels (cpu, native TensorFlow) use the composed forms;
 * results agree to float rounding.
 */
import * as tf from '@tensorflow/tfjs';
import { wasmInternals } from './tfjs-internals.js';
import { ERF_P, ERF_Q, EXP_LN2_HI, EXP_LN2_LO, EXP_P, INV_SQRT_2PI, simdKernels } from './wasm-simd.js';

export const GELU_KERNEL = 'DtlGelu';
export const GELU_GRAD_KERNEL = 'DtlGeluGrad';

type HeapTensor = { shape: number[]; dtype: tf.DataType; dataId: object };

// The JS loops below repeat the SIMD loops of wasm-simd.ts operation by operation, each rounded to
// float32 (exact for + − × ÷ of float32 operands): a value's result does not depend on whether it
// falls in the SIMD part or the last n mod 4. In float64 the rational erf overshoots 1 beyond the
// clamp, so Φ came out ≈ −2.5e-8 and GELU(−1e10) = +247 in the tail.
const f32 = Math.fround;
const P = ERF_P.map(f32);
const Q = ERF_Q.map(f32);
const E = EXP_P.map(f32);
const [SQRT1_2, LOG2E, LN2_HI, LN2_LO, INV_SQRT_2PI_F] = [Math.SQRT1_2, Math.LOG2E, EXP_LN2_HI, EXP_LN2_LO, INV_SQRT_2PI].map(f32);

const horner = (coefs: number[], v: number) => coefs.reduce((acc, c) => f32(f32(acc * v) + c));

/** f32x4.nearest: round half to even (Math.round rounds half up). */
function nearest(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Φ(v) = 0.5·(1 + erf(v/√2)), erf(c) ≈ c·P(c²)/Q(c²) on c clamped to [−4, 4]. */
function normCdf(v: number): number {
  let c = f32(v * SQRT1_2);
  c = c > 4 ? 4 : c < -4 ? -4 : c;
  const c2 = f32(c * c);
  return f32(f32(f32(f32(c * horner(P, c2)) / horner(Q, c2)) * 0.5) + 0.5);
}

/** x·φ(x), φ(x) = exp(−x²/2)/√(2π), with exp as Cephes' expf (0 where it underflows). */
function xPdf(x: number): number {
  const h = f32(f32(x * x) * -0.5);
  const y = h < -87 ? -87 : h;
  const k = nearest(f32(y * LOG2E));
  const r = f32(f32(y - f32(k * LN2_HI)) - f32(k * LN2_LO));
  const e = f32(f32(f32(f32(horner(E, r) * r) * r) + r) + 1);
  const exp = h >= -87 ? f32(e * 2 ** k) : 0;
  return f32(f32(exp * INV_SQRT_2PI_F) * x);
}

/**
 * One pass over the heap: the SIMD loop (wasm-simd.ts) for all but the last n mod 4 floats, the JS
 * loop for those (and for everything where the engine has no SIMD).
 */
function unary(args: Parameters<tf.KernelFunc>[0], simd: 'gelu', f: (v: number) => number): tf.TensorInfo {
  const x = args.inputs.x as HeapTensor & tf.TensorInfo;
  if (x.dtype !== 'float32') throw new Error(`GELU kernels take float32, got ${x.dtype}`);
  const backend = wasmInternals(args.backend);
  const out = backend.makeOutput(x.shape, 'float32');
  const n = x.shape.reduce((a, b) => a * b, 1);
  const memory = backend.wasm.asm.memory;
  const kernels = memory ? simdKernels(memory) : null;
  let from = 0;
  if (kernels) {
    kernels[simd](backend.dataIdMap.get(x.dataId)!.memoryOffset, backend.dataIdMap.get(out.dataId)!.memoryOffset, n);
    from = n - (n % 4);
  }
  // Views taken after makeOutput: growing the heap detaches earlier ones.
  const src = backend.typedArrayFromHeap(x);
  const dst = backend.typedArrayFromHeap(out as unknown as HeapTensor);
  for (let i = from; i < n; i++) dst[i] = f(src[i]);
  return out;
}

export const geluKernel: tf.KernelFunc = (args) => unary(args, 'gelu', (v) => f32(normCdf(v) * v));

/** dy·(Φ(x) + x·φ(x)) in one pass: one output instead of the eight temporaries of the composed form. */
export const geluGradKernel: tf.KernelFunc = (args) => {
  const x = args.inputs.x as HeapTensor & tf.TensorInfo;
  const dy = args.inputs.dy as HeapTensor & tf.TensorInfo;
  if (x.dtype !== 'float32' || dy.dtype !== 'float32') throw new Error('GELU kernels take float32');
  const backend = wasmInternals(args.backend);
  const out = backend.makeOutput(x.shape, 'float32');
  const n = x.shape.reduce((a, b) => a * b, 1);
  const memory = backend.wasm.asm.memory;
  const kernels = memory ? simdKernels(memory) : null;
  let from = 0;
  if (kernels) {
    const at = (t: tf.TensorInfo) => backend.dataIdMap.get(t.dataId)!.memoryOffset;
    kernels.geluGrad(at(x), at(dy), at(out), n);
    from = n - (n % 4);
  }
  const xs = backend.typedArrayFromHeap(x);
  const ds = backend.typedArrayFromHeap(dy);
  const dst = backend.typedArrayFromHeap(out as unknown as HeapTensor);
  for (let i = from; i < n; i++) {
    const v = xs[i];
    dst[i] = f32(xPdf(v) + normCdf(v)) * ds[i];
  }
  return out;
};

/** DtlGelu's gradient: the one-pass kernel where the backend has it, the composed form elsewhere. */
export const geluGradient: tf.GradConfig = {
  kernelName: GELU_KERNEL,
  inputsToSave: ['x'],
  gradFunc: (dy, saved) => {
    const [x] = saved;
    return {
      // dy·(Φ(x) + x·φ(x)), φ(x) = exp(−x²/2)/√(2π): one kernel where the backend has it (not
      // itself differentiable: nothing here takes second derivatives through GELU).
      x: () =>
        tf.getKernel(GELU_GRAD_KERNEL, tf.getBackend()) !== undefined
          ? (tf.engine().runKernel(GELU_GRAD_KERNEL, { x, dy: dy as tf.Tensor }) as tf.Tensor)
          : tf.mul(dy as tf.Tensor, tf.add(tf.mul(tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1), 0.5), tf.mul(x, tf.mul(tf.exp(tf.mul(tf.square(x), -0.5)), INV_SQRT_2PI)))),
    };
  },
};

/** Exact GELU, 0.5·x·(1 + erf(x/√2)): one kernel where the backend has it, composed ops elsewhere. */
export function geluOp<T extends tf.Tensor>(x: T): T {
  // The kernels take float32 only; other dtypes go the composed way, as on every other backend.
  if (x.dtype === 'float32' && tf.getKernel(GELU_KERNEL, tf.getBackend()) !== undefined) return tf.engine().runKernel(GELU_KERNEL, { x }) as T;
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1)) as T;
}
