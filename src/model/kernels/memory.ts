/**
 * Peak tensor memory of a computation, in bytes of distinct tensor buffers.
 *
 * tfjs's own figure (tf.memory().numBytes, and tf.profile's peakBytes built on it) adds up the
 * size of every live Tensor object, so a reshape view or a tensor saved for the backward pass
 * that shares its buffer counts again. On wasm this module counts what the backend actually holds:
 * while fn runs it watches the backend's buffer table (install.ts watchWasmBuffers) and sums the
 * bytes of buffers allocated minus buffers freed; the table is unpatched again before this
 * returns. Other backends fall back to tf.profile.
 */
import * as tf from '@tensorflow/tfjs';
import { watchWasmBuffers } from './install.js';
import type { BufferEntry } from './tfjs-internals.js';

const bytesOf = (e: BufferEntry) => (e.dtype === 'string' ? 0 : e.shape.reduce((a, b) => a * b, 1) * (e.dtype === 'bool' ? 1 : 4));

/**
 * Peak bytes of tensor buffers while fn runs, above what was allocated before it. On wasm:
 * distinct buffers (views and shared saved tensors count once); elsewhere tf.profile's figure.
 * fn runs synchronously (nested calls included: each has its own peak).
 */
export async function measurePeakBytes<T>(fn: () => T): Promise<{ peakBytes: number; result: T }> {
  let live = 0;
  let peak = 0;
  const stop = watchWasmBuffers({
    set: (entry, replaced) => {
      live += bytesOf(entry) - (replaced ? bytesOf(replaced) : 0);
      if (live > peak) peak = live;
    },
    delete: (entry) => {
      live -= bytesOf(entry);
    },
  });
  if (stop !== null) {
    try {
      const result = fn();
      return { peakBytes: peak, result };
    } finally {
      stop();
    }
  }
  const before = tf.memory().numBytes;
  const info = await tf.profile(fn as () => tf.TensorContainer);
  const top = info.kernels.length === 0 ? before : Math.max(before, info.peakBytes);
  return { peakBytes: top - before, result: info.result as T };
}
