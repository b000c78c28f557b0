/**
 * BatchMatMul for the tfjs wasm backend that keeps every product on a fast path: small products
 * (the adapters': up to 64 output columns, batches of them, transposed left operands; see
 * SIMD_MAX_N) on this project's SIMD loop (wasm-gemm.ts), the rest on XNNPACK.
 *
 * The stock kernel (tfjs-backend-wasm 4.22, batch_mat_mul_impl.cc) calls XNNPACK's fully-connected
 * operator only for a single untransposed product ([1, M, K] × [1, K, N]); anything else — a
 * batch of products, as attention's per-(image, head) QKᵀ and PV, or a transposed operand, as in
 * every linear layer's backward — runs a blocked scalar loop, measured here at ≈1.5–2.5 GFLOP/s
 * against 15–30 GFLOP/s for XNNPACK. XNNPACK in turn creates an operator and packs the right
 * operand on every call, which for a product of a few hundred thousand multiply-adds costs more
 * than the arithmetic; the SIMD loop has no set-up. On the XNNPACK path this kernel:
 * - materialises a transposed operand with the backend's Transpose kernel (one memory pass);
 * - with a shared right operand ([B, M, K] × [K, N]) runs ONE product on the rows stacked as
 *   [B·M, K];
 * - otherwise runs one XNNPACK product per output batch element on the operands' slices in place
 *   (any broadcasting of the batch dims: the slice of each operand is found by its own strides);
 * - passes every operand as a temporary tensor id pointing into the parent's heap memory (no
 *   copy), unregistered right after, which also frees the XNNPACK operator created on it. The C++
 *   side caches that operator, with the packed weights, under the right operand's id alone — not
 *   its shape — so under a caller's id a later product with a reshape of the same buffer (Reshape
 *   and Identity share ids) would reuse weights packed for another [K, N].
 * The stock C++ entry point does the arithmetic in every case, so the only difference from the
 * stock kernel is the summation order of XNNPACK versus the scalar loop (float32 rounding). Where
 * the stock kernel is wrong it is not called: batch dims that broadcast other than elementwise
 * (its scalar loop runs max(batchA, batchB) products with no broadcasting: the rest of the output
 * is uninitialised memory), a zero-sized batch (a trap) and K = 0 (uninitialised output, not 0).
 */
import * as tf from '@tensorflow/tfjs';
import { wasmInternals, type WasmBackendInternals } from './tfjs-internals.js';
import { gemmKernel, type GemmKernel } from './wasm-gemm.js';

type KernelArgs = Parameters<tf.KernelFunc>[0];
type Out = tf.TensorInfo | tf.TensorInfo[];
type WasmBackend = WasmBackendInternals;
type CFunc = ReturnType<WasmBackend['wasm']['cwrap']>;

let cBatchMatMul: CFunc | null = null;
let cBackend: WasmBackend | null = null;

const product = (a: readonly number[]) => a.reduce((x, y) => x * y, 1);

/**
 * Which products take the SIMD loop (wasm-gemm.ts) rather than XNNPACK. Up to 64 output columns,
 * any; above, batches of products (one XNNPACK operator per product costs more than its packing
 * saves) and transposed left operands (read in place, no transpose pass). Always with a right
 * operand of at most 2¹⁷ floats: the loop streams B once per left row, so B has to stay in
 * cache. Measured (AVX-512 Xeon, 1 thread): n = 16–64, 12–16 GMAC/s against XNNPACK's 2–12
 * (11–15 for one untransposed product); [64, 544]ᵀ-read × [544, 128] 10 vs 6; a single [544, 64] ×
 * [64, 128] or [2048, 64] × [64, 256] ≈ 20 % faster on XNNPACK; with B = [2048, 768] the loop
 * falls to 2 GMAC/s against 12.
 */
const SIMD_MAX_N = 64;
const SIMD_MAX_B_FLOATS = 2 ** 17;
const shapeBytes = (s: number[]) => new Uint8Array(new Int32Array(s).buffer);

/** [.., r, c] → [.., c, r] with the backend's own Transpose kernel. */
function transposeLast2(x: tf.TensorInfo, backend: WasmBackend): tf.TensorInfo {
  const r = x.shape.length;
  const perm = [...Array(r).keys()];
  [perm[r - 2], perm[r - 1]] = [perm[r - 1], perm[r - 2]];
  return tf.getKernel('Transpose', 'wasm')!.kernelFunc({ inputs: { x }, attrs: { perm } as unknown as tf.NamedAttrMap, backend: backend as unknown as tf.KernelBackend }) as tf.TensorInfo;
}

/** Element strides of a batch shape right-aligned to `rank` dims, 0 along the dims it broadcasts. */
function broadcastStrides(batch: readonly number[], rank: number, matrix: number): number[] {
  const out = new Array<number>(rank).fill(0);
  let stride = matrix;
  for (let i = batch.length - 1, d = rank - 1; i >= 0; i--, d--) {
    if (batch[i] !== 1) out[d] = stride;
    stride *= batch[i];
  }
  return out;
}

/**
 * Calls `f(ia, ib, i)` for each output batch element i (row-major), with the element offsets of
 * its left and right matrices, each operand's batch dims broadcasting by their own strides.
 */
function eachProduct(batchA: number[], batchB: number[], outBatch: number[], sizeA: number, sizeB: number, f: (ia: number, ib: number, i: number) => void): void {
  const rank = outBatch.length;
  const sa = broadcastStrides(batchA, rank, sizeA);
  const sb = broadcastStrides(batchB, rank, sizeB);
  const idx = new Array<number>(rank).fill(0);
  const nOut = product(outBatch);
  let ia = 0;
  let ib = 0;
  for (let i = 0; i < nOut; i++) {
    f(ia, ib, i);
    // Next output batch index, odometer-style; the operands' offsets follow their strides.
    for (let d = rank - 1; d >= 0; d--) {
      ia += sa[d];
      ib += sb[d];
      if (++idx[d] < outBatch[d]) break;
      ia -= sa[d] * outBatch[d];
      ib -= sb[d] * outBatch[d];
      idx[d] = 0;
    }
  }
}

/**
 * Products for wasm-gemm.ts's SIMD loop (n a multiple of 4): a transposed left operand is read
 * in place through its strides; a transposed right one is materialised (the loop reads B's rows
 * as vectors). One call for all left rows when the right operand is shared and a is not transposed.
 */
function simdProducts(
  simd: GemmKernel,
  backend: WasmBackend,
  a: tf.TensorInfo,
  b: tf.TensorInfo,
  out: tf.TensorInfo,
  s: { transposeA: boolean; transposeB: boolean; m: number; k: number; n: number; batchA: number[]; batchB: number[]; outBatch: number[] },
): tf.TensorInfo {
  const { m, k, n } = s;
  const bb = s.transposeB ? transposeLast2(b, backend) : b;
  try {
    const offset = (t: tf.TensorInfo) => backend.dataIdMap.get(t.dataId)!.memoryOffset;
    const [aOff, bOff, oOff] = [offset(a), offset(bb), offset(out)];
    // A(i, p): row-major [m, k], or [k, m] read down its columns.
    const [sai, sap] = s.transposeA ? [4, m * 4] : [k * 4, 4];
    if (product(s.batchB) === 1 && !s.transposeA) simd.gemm(aOff, bOff, oOff, product(s.batchA) * m, k, n, sai, sap);
    else eachProduct(s.batchA, s.batchB, s.outBatch, m * k, k * n, (ia, ib, i) => simd.gemm(aOff + ia * 4, bOff + ib * 4, oOff + i * m * n * 4, m, k, n, sai, sap));
    return out;
  } catch (err) {
    backend.disposeData(out.dataId);
    throw err;
  } finally {
    if (bb !== b) backend.disposeData(bb.dataId);
  }
}

export function batchMatMulKernel(args: KernelArgs, stock: tf.KernelFunc): Out {
  const a = args.inputs.a as tf.TensorInfo;
  const b = args.inputs.b as tf.TensorInfo;
  const { transposeA, transposeB } = args.attrs as unknown as { transposeA: boolean; transposeB: boolean };
  if (a.dtype !== 'float32' || b.dtype !== 'float32' || a.shape.length < 2 || b.shape.length < 2) return stock(args);
  const ra = a.shape.length;
  const rb = b.shape.length;
  const batchA = a.shape.slice(0, -2);
  const batchB = b.shape.slice(0, -2);
  const m = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
  const k = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
  const kB = transposeB ? b.shape[rb - 1] : b.shape[rb - 2];
  const n = transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
  if (k !== kB) return stock(args); // which throws, with its message
  // Throws for batch dims that do not broadcast, as the stock kernel does first.
  const outBatch = tf.broadcast_util.assertAndGetBroadcastShape(batchA, batchB);
  const outShape = [...outBatch, m, n];
  const nA = product(batchA);
  const nB = product(batchB);
  const nOut = product(outBatch);
  const empty = nOut * m * n === 0;
  const backend = wasmInternals(args.backend);
  const memory = backend.wasm.asm.memory;
  const simdFits = n % 4 === 0 && k * n <= SIMD_MAX_B_FLOATS && (n <= SIMD_MAX_N || nB > 1 || transposeA);
  const simd = simdFits && k > 0 && !empty && memory ? gemmKernel(memory) : null;
  // The single untransposed product is already on XNNPACK, its operator cached on b's id for the
  // next call with the same weights. That cache keeps the stock caveat above (a reshape of b to
  // another [K, N] gets the stale operator); no caller in src/ uses one buffer as the right operand
  // under two shapes.
  if (!simd && nA === 1 && nB === 1 && !transposeA && !transposeB && k > 0 && !empty) return stock(args);

  const out = backend.makeOutput(outShape, 'float32');
  if (empty) return out;
  if (k === 0) {
    backend.typedArrayFromHeap(out).fill(0);
    return out;
  }
  if (simd) return simdProducts(simd, backend, a, b, out, { transposeA, transposeB, m, k, n, batchA, batchB, outBatch });
  if (cBackend !== backend) {
    cBackend = backend;
    cBatchMatMul = backend.wasm.cwrap('BatchMatMul', null, ['number', 'array', 'number', 'number', 'array', 'number', 'number', 'number', 'number']);
  }
  const call = cBatchMatMul!;
  const { wasm } = backend;
  const temps: tf.TensorInfo[] = [];
  const ids: number[] = [];
  const view = (offset: number, size: number) => {
    const id = backend.dataIdNextNumber++;
    wasm.tfjs.registerTensor(id, size, offset);
    ids.push(id);
    return id;
  };
  /** out[rows, n] = a[rows, k] · b[k, n] at these byte offsets of the heap. */
  const product2d = (aOff: number, bOff: number, oOff: number, rows: number) => {
    try {
      call(view(aOff, rows * k), shapeBytes([1, rows, k]), 3, view(bOff, k * n), shapeBytes([1, k, n]), 3, false, false, view(oOff, rows * n));
    } finally {
      // Unregisters the ids (and the XNNPACK operator created on b's); the memory is the parents'.
      for (const id of ids.splice(0)) wasm.tfjs.disposeData(id);
    }
  };
  try {
    const aa = transposeA ? transposeLast2(a, backend) : a;
    if (aa !== a) temps.push(aa);
    const bb = transposeB ? transposeLast2(b, backend) : b;
    if (bb !== b) temps.push(bb);
    const offset = (t: tf.TensorInfo) => backend.dataIdMap.get(t.dataId)!.memoryOffset;
    const [aOff, bOff, oOff] = [offset(aa), offset(bb), offset(out)];
    if (nB === 1) {
      // One right-hand matrix: all left rows (in output order, as b broadcasts) in one product.
      product2d(aOff, bOff, oOff, nA * m);
      return out;
    }
    eachProduct(batchA, batchB, outBatch, m * k, k * n, (ia, ib, i) => product2d(aOff + ia * 4, bOff + ib * 4, oOff + i * m * n * 4, m));
    return out;
  } catch (err) {
    backend.disposeData(out.dataId);
    throw err;
  } finally {
    for (const t of temps) backend.disposeData(t.dataId);
  }
}
