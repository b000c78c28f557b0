/**
 * Peak tensor memory of a computation, in bytes of distinct tensor buffers.
 *
 * tfjs's own figure (tf.memory().numBytes, and tf.profile's peakBytes built on it) adds up the
 * size of every live Tensor object, so a reshape view or a tensor saved for the backward pass
 * that shares its buffer counts again. On wasm this module counts what the backend actually holds:
 * it watches the backend's buffer table (dataIdMap) and sums the bytes of buffers allocated minus
 * buffers freed. Other backends fall back to tf.profile.
 */
import * as tf from '@tensorflow/tfjs';

interface BufferEntry {
  shape: number[];
  dtype: tf.DataType;
}
interface BufferTable {
  set(dataId: object, entry: BufferEntry): void;
  get(dataId: object): BufferEntry | undefined;
  has(dataId: object): boolean;
  delete(dataId: object): boolean;
}

const bytesOf = (e: BufferEntry) => (e.dtype === 'string' ? 0 : e.shape.reduce((a, b) => a * b, 1) * (e.dtype === 'bool' ? 1 : 4));

let watched: BufferTable | null = null;
/** Bytes allocated minus bytes freed since the watch began (may be negative). */
let live = 0;
const trackers = new Set<{ base: number; peak: number }>();

function watchWasmBuffers(): boolean {
  if (tf.getBackend() !== 'wasm') return false;
  const table = (tf.backend() as unknown as { dataIdMap?: BufferTable }).dataIdMap;
  if (table === undefined) return false;
  if (watched === table) return true;
  const set = table.set.bind(table);
  const del = table.delete.bind(table);
  table.set = (dataId, entry) => {
    const old = table.has(dataId) ? table.get(dataId) : undefined;
    live += bytesOf(entry) - (old ? bytesOf(old) : 0);
    for (const t of trackers) if (live > t.peak) t.peak = live;
    set(dataId, entry);
  };
  table.delete = (dataId) => {
    const old = table.get(dataId);
    if (old) live -= bytesOf(old);
    return del(dataId);
  };
  watched = table;
  return true;
}

/**
 * Peak bytes of tensor buffers while fn runs, above what was allocated before it. On wasm:
 * distinct buffers (views and shared saved tensors count once); elsewhere tf.profile's figure.
 */
export async function measurePeakBytes<T extends tf.TensorContainer>(fn: () => T): Promise<{ peakBytes: number; result: T }> {
  if (watchWasmBuffers()) {
    const tracker = { base: live, peak: live };
    trackers.add(tracker);
    try {
      const result = fn();
      return { peakBytes: tracker.peak - tracker.base, result };
    } finally {
      trackers.delete(tracker);
    }
  }
  const before = tf.memory().numBytes;
  const info = await tf.profile(fn);
  const peak = info.kernels.length === 0 ? before : Math.max(before, info.peakBytes);
  return { peakBytes: peak - before, result: info.result as T };
}
