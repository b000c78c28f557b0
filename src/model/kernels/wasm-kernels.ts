/**
 * Faster kernels for the tfjs wasm backend (4.22), registered in place of the stock ones by
 * install.ts at backend start-up. Each replacement returns what the stock kernel returns — bit for
 * bit, except BatchMatMul (a different summation order: within float32 rounding) and the cases
 * below where the stock kernel is wrong — and falls through to the stock kernel for any dtype,
 * attribute or shape it does not handle.
 *
 * Measured here, the stock kernels are pathological in five places this project relies on (and a
 * fifth, GELU's libm erf, is replaced by a kernel of our own in gelu-kernel.ts):
 * - Slice (kernels/Slice.js) starts with `backend.readSync(x)`, which copies the WHOLE input out of
 *   the wasm heap before copying the part it needs, so G segments of a batch cost O(G × batch)
 *   bytes of copying (the mixed-tenant suffix cuts its batch into one segment per adapter).
 *   SplitV (every concat's gradient) calls that Slice once per part.
 * - GatherV2 (the C++ `Gather`) copies element by element: ≈130 ns per float, i.e. 1.6 ms to pick
 *   one [65, 192] row — slower than a one-hot matMul of the same rows.
 * - Identity copies its input. The gradient tape saves every taped op's inputs through it
 *   (engine.clone), so on wasm each saved input was a second copy of an activation. Tensors are
 *   immutable (a Variable's assign swaps its buffer), so sharing the buffer with a reference count
 *   — what the wasm Reshape and the cpu backend's Identity do — is safe.
 * - BatchMatMul only reaches XNNPACK for one untransposed 2-D product; a batch of them (attention's
 *   per-head products) or a transposed operand (every linear layer's backward) takes a scalar loop
 *   at ≈1.5–2.5 GFLOP/s against 15–30 for XNNPACK. See wasm-matmul.ts.
 * The Slice/GatherV2 replacements read the input through a view of the heap and copy contiguous
 * runs with `TypedArray.set`. Where the stock kernels are wrong the replacements are not bit-equal
 * to them but to TensorFlow's definition: GatherV2 with batchDims > 0 (stock picks wrong elements,
 * or throws on an empty batch) or an empty x (stock returns a 4-D shape), and Slice out of range
 * (stock returns uninitialised memory; here it throws, as the cpu backend does).
 */
import * as tf from '@tensorflow/tfjs';
import { wasmInternals } from './tfjs-internals.js';
import { batchMatMulKernel } from './wasm-matmul.js';

type HeapTensor = { shape: number[]; dtype: tf.DataType; dataId: object };
type KernelArgs = Parameters<tf.KernelFunc>[0];
type Out = tf.TensorInfo | tf.TensorInfo[];
/** A replacement kernel: its arguments and the stock kernel it falls back to. */
export type Replacement = (args: KernelArgs, stock: tf.KernelFunc) => Out;

const product = (a: readonly number[]) => a.reduce((x, y) => x * y, 1);
const numeric = (dtype: tf.DataType) => dtype === 'float32' || dtype === 'int32' || dtype === 'bool';

function strides(shape: readonly number[]): number[] {
  const out = new Array<number>(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) out[i] = out[i + 1] * shape[i + 1];
  return out;
}

function slice(args: KernelArgs, stock: tf.KernelFunc): Out {
  const x = args.inputs.x as HeapTensor & tf.TensorInfo;
  if (!numeric(x.dtype)) return stock(args);
  const backend = wasmInternals(args.backend);
  const attrs = args.attrs as unknown as { begin: number | number[]; size: number | number[] };
  const [begin, size] = tf.slice_util.parseSliceParams(x as unknown as tf.Tensor, attrs.begin, attrs.size);
  // Neither tf.slice nor the stock wasm kernel checks the bounds: out of range it returns whatever
  // the fresh output buffer held (freed memory of other tensors). Refuse as the cpu backend does.
  if (begin.some((b) => b < 0)) throw new Error(`slice() does not support negative begin indexing (begin ${begin})`);
  tf.slice_util.assertParamsValid(x, begin, size);
  const out = backend.makeOutput(size, x.dtype);
  if (product(size) === 0) return out;
  const src = backend.typedArrayFromHeap(x);
  const dst = backend.typedArrayFromHeap(out as unknown as HeapTensor);
  const st = strides(x.shape);
  // Fold trailing axes taken whole into one contiguous run.
  let inner = x.shape.length - 1;
  while (inner > 0 && size[inner] === x.shape[inner] && begin[inner] === 0) inner--;
  const run = product(size.slice(inner));
  const idx = new Array<number>(inner).fill(0);
  for (let o = 0; ; o += run) {
    let off = begin[inner] * st[inner];
    for (let a = 0; a < inner; a++) off += (begin[a] + idx[a]) * st[a];
    dst.set(src.subarray(off, off + run), o);
    let a = inner - 1;
    for (; a >= 0; a--) {
      if (++idx[a] < size[a]) break;
      idx[a] = 0;
    }
    if (a < 0) break;
  }
  return out;
}

function gather(args: KernelArgs, stock: tf.KernelFunc): Out {
  const x = args.inputs.x as HeapTensor & tf.TensorInfo;
  const indices = args.inputs.indices as HeapTensor & tf.TensorInfo;
  const attrs = args.attrs as unknown as { axis: number; batchDims?: number };
  if (!numeric(x.dtype) || indices.dtype !== 'int32') return stock(args);
  const backend = wasmInternals(args.backend);
  // Throws for an axis outside [-rank, rank), with the stock kernel's message.
  const axis = tf.util.parseAxisParam(attrs.axis, x.shape)[0];
  const dim = x.shape[axis];
  // Copied out before makeOutput: growing the heap detaches earlier views of it.
  const idx = Int32Array.from(backend.typedArrayFromHeap(indices));
  for (const i of idx) {
    if (!(i >= 0 && i < dim)) throw new Error(`GatherV2: the index value ${i} is not in [0, ${dim - 1}]`);
  }
  // Also validates batchDims against x and the indices, as the stock kernel does (which then fails
  // on an empty batch: it divides the index count by the batch size).
  const info = tf.backend_util.segment_util.collectGatherOpShapeInfo(x as unknown as tf.Tensor, indices as unknown as tf.Tensor, axis, attrs.batchDims ?? 0);
  const { batchSize, outerSize, sliceSize: inner, outputShape } = info;
  const out = backend.makeOutput(outputShape, x.dtype);
  if (product(outputShape) === 0) return out;
  const src = backend.typedArrayFromHeap(x);
  const dst = backend.typedArrayFromHeap(out as unknown as HeapTensor);
  const perBatch = idx.length / batchSize;
  let o = 0;
  for (let b = 0; b < batchSize; b++) {
    const batchIdx = idx.subarray(b * perBatch, (b + 1) * perBatch);
    for (let q = 0; q < outerSize; q++) {
      const base = (b * outerSize + q) * dim * inner;
      for (const i of batchIdx) {
        dst.set(src.subarray(base + i * inner, base + (i + 1) * inner), o);
        o += inner;
      }
    }
  }
  return out;
}

/**
 * SplitV (tf.split, and the gradient of every concat) as one heap-view Slice per part: the stock
 * kernel calls the stock Slice for each part, so each part copied the whole input out of the heap
 * first — 3.8 ms to split a [256, 17, 64] concat gradient in two on the bundled backbone.
 */
function splitV(args: KernelArgs, stock: tf.KernelFunc): Out {
  const x = args.inputs.x as HeapTensor & tf.TensorInfo;
  if (!numeric(x.dtype)) return stock(args);
  const attrs = args.attrs as unknown as { numOrSizeSplits: number | number[]; axis: number };
  const axis = tf.util.parseAxisParam(attrs.axis, x.shape)[0];
  const sizes = tf.backend_util.prepareSplitSize(x as unknown as tf.Tensor, attrs.numOrSizeSplits, axis);
  const begin = new Array<number>(x.shape.length).fill(0);
  return sizes.map((s) => {
    const size = [...x.shape];
    size[axis] = s;
    const part = slice({ inputs: { x }, attrs: { begin: [...begin], size } as unknown as tf.NamedAttrMap, backend: args.backend }, stock) as tf.TensorInfo;
    begin[axis] += s;
    return part;
  });
}

/** A new tensor on the same buffer (reference counted), as the wasm Reshape kernel does. */
function identity(args: KernelArgs, stock: tf.KernelFunc): Out {
  const x = args.inputs.x as tf.TensorInfo;
  if (!numeric(x.dtype)) return stock(args);
  wasmInternals(args.backend).incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

/** The wasm kernels replaced, by name (install.ts registers them). */
export const WASM_KERNEL_REPLACEMENTS: ReadonlyArray<readonly [string, Replacement]> = [
  ['Slice', slice],
  ['SplitV', splitV],
  ['GatherV2', gather],
  ['Identity', identity],
  ['BatchMatMul', batchMatMulKernel],
];
