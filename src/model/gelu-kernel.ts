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
 * The gradient, d/dx = Φ(x) + x·φ(x) with Φ the standard normal CDF (same rational erf, also one
 * pass) and φ its density, is composed of tf ops, so it is itself differentiable. Backends without
 * the kernel (cpu, native TensorFlow) use the composed form; results agree to float rounding.
 */
import * as tf from '@tensorflow/tfjs';
import { ERF_P, ERF_Q, simdKernels, type SimdKernels, type WasmMemory } from './wasm-simd.js';

export const GELU_KERNEL = 'DtlGelu';
export const NORM_CDF_KERNEL = 'DtlNormCdf';

type HeapTensor = { shape: number[]; dtype: tf.DataType; dataId: object };
interface WasmBackendLike {
  typedArrayFromHeap(t: HeapTensor): Float32Array;
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  dataIdMap: { get(dataId: object): { memoryOffset: number } };
  wasm: { asm: { memory?: WasmMemory } };
}

// erf(x) ≈ x·P(x²)/Q(x²) for |x| ≤ 4 (beyond, erf is ±1 in float32); shared with wasm-simd.ts.
const [A0, A1, A2, A3, A4, A5, A6] = ERF_P;
const [B0, B1, B2, B3, B4] = ERF_Q;

/** Φ(v) = 0.5·(1 + erf(v/√2)). */
function normCdf(v: number): number {
  let c = v * Math.SQRT1_2;
  c = c > 4 ? 4 : c < -4 ? -4 : c;
  const x2 = c * c;
  const p = (((((A0 * x2 + A1) * x2 + A2) * x2 + A3) * x2 + A4) * x2 + A5) * x2 + A6;
  const q = (((B0 * x2 + B1) * x2 + B2) * x2 + B3) * x2 + B4;
  return 0.5 + (0.5 * c * p) / q;
}

/**
 * One pass over the heap: the SIMD loop (wasm-simd.ts) for all but the last n mod 4 floats, the JS
 * loop for those (and for everything where the engine has no SIMD).
 */
function unary(args: Parameters<tf.KernelFunc>[0], simd: keyof SimdKernels, f: (v: number) => number): tf.TensorInfo {
  const x = args.inputs.x as HeapTensor & tf.TensorInfo;
  if (x.dtype !== 'float32') throw new Error(`GELU kernels take float32, got ${x.dtype}`);
  const backend = args.backend as unknown as WasmBackendLike;
  const out = backend.makeOutput(x.shape, 'float32');
  const n = x.shape.reduce((a, b) => a * b, 1);
  const memory = backend.wasm.asm.memory;
  const kernels = memory ? simdKernels(memory) : null;
  let from = 0;
  if (kernels) {
    kernels[simd](backend.dataIdMap.get(x.dataId).memoryOffset, backend.dataIdMap.get(out.dataId).memoryOffset, n);
    from = n - (n % 4);
  }
  // Views taken after makeOutput: growing the heap detaches earlier ones.
  const src = backend.typedArrayFromHeap(x);
  const dst = backend.typedArrayFromHeap(out as unknown as HeapTensor);
  for (let i = from; i < n; i++) dst[i] = f(src[i]);
  return out;
}

const geluKernel: tf.KernelFunc = (args) => unary(args, 'gelu', (v) => v * normCdf(v));
const normCdfKernel: tf.KernelFunc = (args) => unary(args, 'normCdf', normCdf);

const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/** x·Φ(x) with Φ from the one-pass kernel when the backend has it. */
function normCdfOf(x: tf.Tensor): tf.Tensor {
  if (tf.getKernel(NORM_CDF_KERNEL, tf.getBackend()) !== undefined) return tf.engine().runKernel(NORM_CDF_KERNEL, { x }) as tf.Tensor;
  return tf.mul(tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1), 0.5);
}

let gradientRegistered = false;

function registerGeluGradient(): void {
  if (gradientRegistered) return;
  gradientRegistered = true;
  tf.registerGradient({
    kernelName: GELU_KERNEL,
    inputsToSave: ['x'],
    gradFunc: (dy, saved) => {
      const [x] = saved;
      return {
        // Φ(x) + x·φ(x), φ(x) = exp(−x²/2)/√(2π)
        x: () => tf.mul(dy as tf.Tensor, tf.add(normCdfOf(x), tf.mul(x, tf.mul(tf.exp(tf.mul(tf.square(x), -0.5)), INV_SQRT_2PI)))),
      };
    },
  });
}

/** Registers the wasm GELU kernels (idempotent); see wasm-kernels.ts. */
export function registerWasmGeluKernels(): void {
  registerGeluGradient();
  for (const [kernelName, kernelFunc] of [
    [GELU_KERNEL, geluKernel],
    [NORM_CDF_KERNEL, normCdfKernel],
  ] as const) {
    if (tf.getKernel(kernelName, 'wasm') === undefined) tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc });
  }
}

export function unregisterWasmGeluKernels(): void {
  for (const kernelName of [GELU_KERNEL, NORM_CDF_KERNEL]) {
    if (tf.getKernel(kernelName, 'wasm') !== undefined) tf.unregisterKernel(kernelName, 'wasm');
  }
}

/** Exact GELU, 0.5·x·(1 + erf(x/√2)): one kernel where the backend has it, composed ops elsewhere. */
export function geluOp<T extends tf.Tensor>(x: T): T {
  if (tf.getKernel(GELU_KERNEL, tf.getBackend()) !== undefined) return tf.engine().runKernel(GELU_KERNEL, { x }) as T;
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1)) as T;
}
