/**
 * BatchMatMul for the tfjs wasm backend that keeps every product on XNNPACK.
 *
 * The stock kernel (tfjs-backend-wasm 4.22, batch_mat_mul_impl.cc) calls XNNPACK's fully-connected
 * operator only for a single untransposed product ([1, M, K] × [1, K, N]); anything else — a
 * batch of products, as attention's per-(image, head) QKᵀ and PV, or a transposed operand, as in
 * every linear layer's backward — runs a blocked scalar loop, measured here at ≈1.5–2.5 GFLOP/s
 * against 15–30 GFLOP/s for XNNPACK. This kernel:
 * - materialises a transposed operand with the backend's Transpose kernel (one memory pass);
 * - with a shared right operand ([B, M, K] × [K, N]) runs ONE product on the rows stacked as
 *   [B·M, K];
 * - otherwise runs one XNNPACK product per batch element on the operands' slices in place: each
 *   slice is registered with the C++ backend as a temporary tensor id pointing into the parent's
 *   heap memory (no copy), and unregistered right after (which also frees the XNNPACK operator
 *   cached on it).
 * The stock C++ entry point does the arithmetic in every case, so the only difference from the
 * stock kernel is the summation order of XNNPACK versus the scalar loop (float32 rounding).
 */
import * as tf from '@tensorflow/tfjs';

type KernelArgs = Parameters<tf.KernelFunc>[0];
type Out = tf.TensorInfo | tf.TensorInfo[];

type CFunc = (...args: unknown[]) => void;
interface WasmModule {
  cwrap(name: string, ret: null, args: string[]): CFunc;
  tfjs: { registerTensor(id: number, size: number, offset: number): void; disposeData(id: number): void };
}
interface WasmBackend {
  wasm: WasmModule;
  dataIdMap: { get(dataId: object): { id: number; memoryOffset: number } };
  dataIdNextNumber: number;
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  disposeData(dataId: object): boolean;
}

let cBatchMatMul: CFunc | null = null;
let cBackend: WasmBackend | null = null;

const product = (a: readonly number[]) => a.reduce((x, y) => x * y, 1);
const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((v, i) => v === b[i]);
const shapeBytes = (s: number[]) => new Uint8Array(new Int32Array(s).buffer);

/** [.., r, c] → [.., c, r] with the backend's own Transpose kernel. */
function transposeLast2(x: tf.TensorInfo, backend: WasmBackend): tf.TensorInfo {
  const r = x.shape.length;
  const perm = [...Array(r).keys()];
  [perm[r - 2], perm[r - 1]] = [perm[r - 1], perm[r - 2]];
  return tf.getKernel('Transpose', 'wasm')!.kernelFunc({ inputs: { x }, attrs: { perm } as unknown as tf.NamedAttrMap, backend: backend as unknown as tf.KernelBackend }) as tf.TensorInfo;
}

export function batchMatMulKernel(args: KernelArgs, stock: (args: KernelArgs) => Out): Out {
  const a = args.inputs.a as tf.TensorInfo;
  const b = args.inputs.b as tf.TensorInfo;
  const { transposeA, transposeB } = args.attrs as unknown as { transposeA: boolean; transposeB: boolean };
  if (a.dtype !== 'float32' || b.dtype !== 'float32' || a.shape.length < 2 || b.shape.length < 2) return stock(args);
  const ra = a.shape.length;
  const rb = b.shape.length;
  const batchA = a.shape.slice(0, -2);
  const batchB = b.shape.slice(0, -2);
  const nA = product(batchA);
  const nB = product(batchB);
  const m = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
  const k = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
  const kB = transposeB ? b.shape[rb - 1] : b.shape[rb - 2];
  const n = transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
  // Mismatches, broadcasting other than "one side has a single matrix", empty products and the
  // single untransposed product (already on XNNPACK) stay with the stock kernel.
  const elementwise = nA === nB && sameShape(batchA, batchB);
  if (k !== kB || m * n * k === 0 || !(elementwise || nA === 1 || nB === 1)) return stock(args);
  if (nA === 1 && nB === 1 && !transposeA && !transposeB) return stock(args);

  const backend = args.backend as unknown as WasmBackend;
  if (cBackend !== backend) {
    cBackend = backend;
    cBatchMatMul = backend.wasm.cwrap('BatchMatMul', null, ['number', 'array', 'number', 'number', 'array', 'number', 'number', 'number', 'number']);
  }
  const call = cBatchMatMul!;
  const outBatch = nA >= nB ? batchA : batchB;
  const temps: tf.TensorInfo[] = [];
  try {
    const aa = transposeA ? transposeLast2(a, backend) : a;
    const bb = transposeB ? transposeLast2(b, backend) : b;
    if (aa !== a) temps.push(aa);
    if (bb !== b) temps.push(bb);
    const out = backend.makeOutput([...outBatch, m, n], 'float32');
    const info = (t: tf.TensorInfo) => backend.dataIdMap.get(t.dataId);
    if (nB === 1) {
      // One right-hand matrix: all left rows in one product.
      call(info(aa).id, shapeBytes([1, nA * m, k]), 3, info(bb).id, shapeBytes([1, k, n]), 3, false, false, info(out).id);
      return out;
    }
    const { wasm } = backend;
    const aOff = info(aa).memoryOffset;
    const bOff = info(bb).memoryOffset;
    const oOff = info(out).memoryOffset;
    const sa = shapeBytes([1, m, k]);
    const sb = shapeBytes([1, k, n]);
    const batches = Math.max(nA, nB);
    for (let i = 0; i < batches; i++) {
      const ia = backend.dataIdNextNumber++;
      const ib = backend.dataIdNextNumber++;
      const io = backend.dataIdNextNumber++;
      wasm.tfjs.registerTensor(ia, m * k, aOff + (nA === 1 ? 0 : i * m * k * 4));
      wasm.tfjs.registerTensor(ib, k * n, bOff + i * k * n * 4);
      wasm.tfjs.registerTensor(io, m * n, oOff + i * m * n * 4);
      try {
        call(ia, sa, 3, ib, sb, 3, false, false, io);
      } finally {
        // Unregisters the ids (and the XNNPACK operator cached on ib); the memory is the parents'.
        wasm.tfjs.disposeData(ia);
        wasm.tfjs.disposeData(ib);
        wasm.tfjs.disposeData(io);
      }
    }
    return out;
  } finally {
    for (const t of temps) backend.disposeData(t.dataId);
  }
}
