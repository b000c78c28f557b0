/**
 * What holding N loaded values really costs the process, per value: the growth of the V8 heap
 * (objects, strings, small typed arrays), of memory outside it (ArrayBuffers, Buffers) and of the
 * tfjs backend's tensor bytes (the wasm heap, which never shrinks), each after a full GC, divided
 * by N. The values are kept alive in an array while measured and disposed afterwards.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import * as tf from '@tensorflow/tfjs';

/**
 * A full GC without starting node with --expose-gc, with pauses between: freed ArrayBuffer
 * backing stores leave `external` only after the sweeper has run.
 */
async function fullGc(): Promise<void> {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface ResidentCost {
  count: number;
  /** Per value, bytes. */
  jsHeap: number;
  external: number;
  tensorBytes: number;
  tensors: number;
  total: number;
}

interface Snapshot {
  heap: number;
  external: number;
  tensorBytes: number;
  tensors: number;
}

async function snapshot(): Promise<Snapshot> {
  await fullGc();
  const m = process.memoryUsage();
  const t = tf.memory();
  // `external` includes arrayBuffers (typed arrays' backing stores) and the wasm memory itself;
  // the wasm heap is counted through tfjs's tensor bytes instead (it grows in large steps).
  const wasmBytes = (() => {
    const b = tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array } };
    return b.wasm?.HEAPU8?.byteLength ?? 0;
  })();
  return { heap: m.heapUsed, external: m.external - wasmBytes, tensorBytes: t.numBytes, tensors: t.numTensors };
}

export async function measureResidentCost<T>(count: number, load: (i: number) => Promise<T> | T, dispose: (v: T) => void): Promise<ResidentCost> {
  // One throwaway load first: first-use JIT code, lookup tables and lazily created state.
  dispose(await load(-1));
  const before = await snapshot();
  const held: T[] = [];
  for (let i = 0; i < count; i++) held.push(await load(i));
  const after = await snapshot();
  for (const v of held) dispose(v);
  const per = (x: number) => x / count;
  const jsHeap = per(after.heap - before.heap);
  const external = per(after.external - before.external);
  const tensorBytes = per(after.tensorBytes - before.tensorBytes);
  return {
    count,
    jsHeap,
    external,
    tensorBytes,
    tensors: per(after.tensors - before.tensors),
    total: jsHeap + external + tensorBytes,
  };
}
