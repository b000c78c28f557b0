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
import { ERF_P, ERF_Q, INV_SQRT_2PI, simdKernels, type WasmMemory } from './wasm-simd.js';

export const GELU_KERNEL = 'DtlGelu';
export const GELU_GRAD_KERNEL = 'DtlGeluGrad';

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
function unary(args: Parameters<tf.KernelFunc>[0], simd: 'gelu', f: (v: number) => number): tf.TensorInfo {
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

/** dy·(Φ(x) + x·φ(x)) in one pass: one output instead of the eight temporaries of the composed form. */
const geluGradKernel: tf.KernelFunc = (args) => {
  const x = args.inputs.x as HeapTensor & tf.TensorInfo;
  const dy = args.inputs.dy as HeapTensor & tf.TensorInfo;
  if (x.dtype !== 'float32' || dy.dtype !== 'float32') throw new Error('GELU kernels take float32');
  const backend = args.backend as unknown as WasmBackendLike;
  const out = backend.makeOutput(x.shape, 'float32');
  const n = x.shape.reduce((a, b) => a * b, 1);
  const memory = backend.wasm.asm.memory;
  const kernels = memory ? simdKernels(memory) : null;
  let from = 0;
  if (kernels) {
    const at = (t: tf.TensorInfo) => backend.dataIdMap.get(t.dataId).memoryOffset;
    kernels.geluGrad(at(x), at(dy), at(out), n);
    from = n - (n % 4);
  }
  const xs = backend.typedArrayFromHeap(x);
  const ds = backend.typedArrayFromHeap(dy);
  const dst = backend.typedArrayFromHeap(out as unknown as HeapTensor);
  for (let i = from; i < n; i++) {
    const v = xs[i];
    dst[i] = ds[i] * (normCdf(v) + v * Math.exp(-0.5 * v * v) * INV_SQRT_2PI);
  }
  return out;
};

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
        // dy·(Φ(x) + x·φ(x)), φ(x) = exp(−x²/2)/√(2π): one kernel where the backend has it (not
        // itself differentiable: nothing here takes second derivatives through GELU).
        x: () =>
          tf.getKernel(GELU_GRAD_KERNEL, tf.getBackend()) !== undefined
            ? (tf.engine().runKernel(GELU_GRAD_KERNEL, { x, dy: dy as tf.Tensor }) as tf.Tensor)
            : tf.mul(dy as tf.Tensor, tf.add(tf.mul(tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1), 0.5), tf.mul(x, tf.mul(tf.exp(tf.mul(tf.square(x), -0.5)), INV_SQRT_2PI)))),
      };
    },
  });
}

/** Registers the wasm GELU kernels (idempotent); see wasm-kernels.ts. */
export function registerWasmGeluKernels(): void {
  registerGeluGradient();
  for (const [kernelName, kernelFunc] of [
    [GELU_KERNEL, geluKernel],
    [GELU_GRAD_KERNEL, geluGradKernel],
  ] as const) {
    if (tf.getKernel(kernelName, 'wasm') === undefined) tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc });
  }
}

export function unregisterWasmGeluKernels(): void {
  for (const kernelName of [GELU_KERNEL, GELU_GRAD_KERNEL]) {
    if (tf.getKernel(kernelName, 'wasm') !== undefined) tf.unregisterKernel(kernelName, 'wasm');
  }
}

/** Exact GELU, 0.5·x·(1 + erf(x/√2)): one kernel where the backend has it, composed ops elsewhere. */
export function geluOp<T extends tf.Tensor>(x: T): T {
  if (tf.getKernel(GELU_KERNEL, tf.getBackend()) !== undefined) return tf.engine().runKernel(GELU_KERNEL, { x }) as T;
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1)) as T;
}
