/** The training prefix store: same numbers as runPrefix, computed once, byte-bounded, half precision, no leaks. */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { detachNative, disposePrefix, initBackend, nativeOf, runPrefix, startBackboneEngine, type Backbone, type PrefixState } from '../../src/model/index.js';
import { TrainingPrefixStore, type CachePrecision } from '../../src/train/prefix-store.js';
import { rng, tinyBackbone } from '../helpers/tiny-backbone.js';
import { TINY } from './helpers.js';

let backbone: Backbone;
const images: Float32Array[] = [];

beforeAll(async () => {
  await initBackend('wasm');
  backbone = tinyBackbone(TINY);
  const r = rng(21);
  const per = 32 * 32 * 3;
  for (let i = 0; i < 10; i++) images.push(Float32Array.from({ length: per }, () => r.uniform() * 2 - 1));
});
afterAll(() => backbone.dispose());

function makeCache(precision: CachePrecision, budgetBytes: number, readBlocks = [0, 1, 2, 3], split = 3): TrainingPrefixStore {
  return new TrainingPrefixStore({ backbone, split, readBlocks, budgetBytes, precision, pixels: (k) => images[k], chunk: 4 });
}

/** runPrefix on the given images, as plain arrays: [inputs..., x]. */
function reference(keys: number[], split = 3): Float32Array[] {
  const pixels = tf.tensor4d(Float32Array.from(keys.flatMap((k) => [...images[k]])), [keys.length, 32, 32, 3]);
  const state = runPrefix(backbone, pixels, split);
  const out = [...state.inputs, state.x].map((t) => Float32Array.from(t.dataSync()));
  disposePrefix(state);
  pixels.dispose();
  return out;
}

function arrays(state: PrefixState): Float32Array[] {
  return [...state.inputs, state.x].map((t) => Float32Array.from(t.dataSync()));
}

const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

describe('TrainingPrefixStore', () => {
  it('serves the same prefix state as runPrefix, computing each row once', async () => {
    const cache = makeCache('float32', 1 << 30);
    const keys = [3, 1, 4, 1, 5];
    const want = reference(keys);
    const first = await cache.batch(keys);
    expect(first.split).toBe(3);
    expect(first.inputs.map((t) => t.shape)).toEqual([[5, 17, 32], [5, 17, 32], [5, 17, 32]]);
    arrays(first).forEach((a, s) => expect(maxDiff(a, want[s])).toBeLessThan(1e-5));
    disposePrefix(first);
    // The repeated key 1 was computed once; nothing was in the cache yet.
    expect(cache.stats()).toMatchObject({ computed: 4, hits: 0, storedRows: 4, overflowRows: 0 });
    const again = await cache.batch(keys);
    arrays(again).forEach((a, s) => expect(maxDiff(a, want[s])).toBeLessThan(1e-5));
    disposePrefix(again);
    expect(cache.stats()).toMatchObject({ computed: 4, hits: 5, storedRows: 4 });
    // 4 slots (inputs of blocks 0..2 and x) × 17 tokens × 32 wide × 4 bytes.
    expect(cache.stats().rowBytes).toBe(4 * 17 * 32 * 4);
    expect(cache.stats().storedBytes).toBe(4 * cache.stats().rowBytes);
  });

  it('fills on the native engine when one is attached: same rows as runPrefix (1e-4), no tensor left', async () => {
    await startBackboneEngine(backbone, 'onnxruntime', { threads: 1, provider: 'cpu' });
    try {
      const cache = makeCache('float32', 1 << 30, [0, 2]);
      const keys = [2, 7, 2, 9];
      const want = reference(keys);
      const before = tf.memory().numTensors;
      const got = await cache.batch(keys);
      expect(nativeOf(backbone)).toBeDefined();
      // Slots: the inputs of read blocks 0 and 2, and x (block 1's input is an empty placeholder).
      expect(maxDiff(Float32Array.from(got.inputs[0].dataSync()), want[0])).toBeLessThan(1e-4);
      expect(got.inputs[1].shape).toEqual([4, 0, 32]);
      expect(maxDiff(Float32Array.from(got.inputs[2].dataSync()), want[2])).toBeLessThan(1e-4);
      const x = Float32Array.from(got.x.dataSync());
      expect(maxDiff(x, want[3])).toBeLessThan(1e-4);
      // onnxruntime's sums differ from tfjs's in the last bits: the rows did come from it.
      expect(maxDiff(x, want[3])).toBeGreaterThan(0);
      disposePrefix(got);
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      await detachNative(backbone);
    }
  });

  it('half precision halves the bytes and stays within half-float rounding', async () => {
    const f32 = makeCache('float32', 1 << 30);
    const f16 = makeCache('float16', 1 << 30);
    const keys = [0, 1, 2, 3, 4, 5];
    const a = await f32.batch(keys);
    const b = await f16.batch(keys);
    const b2 = await f16.batch(keys);
    const [xa, xb, xb2] = [arrays(a), arrays(b), arrays(b2)];
    for (let s = 0; s < xa.length; s++) {
      const scale = xa[s].reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      expect(maxDiff(xa[s], xb[s])).toBeLessThanOrEqual(scale * 2 ** -11);
      expect(maxDiff(xa[s], xb[s])).toBeGreaterThan(0);
      // A fresh row is rounded exactly as a stored one is read back.
      expect(xb2[s]).toEqual(xb[s]);
    }
    [a, b, b2].forEach(disposePrefix);
    expect(f16.stats().storedBytes * 2).toBe(f32.stats().storedBytes);
    expect(f16.stats().rowBytes * 2).toBe(f32.stats().rowBytes);
  });

  it('keeps to its byte budget and recomputes the overflow every time (counted)', async () => {
    const rowBytes = makeCache('float16', 0).rowBytes;
    const cache = makeCache('float16', 3 * rowBytes + 10);
    const keys = [0, 1, 2, 3, 4, 5, 6];
    const s1 = await cache.batch(keys);
    const x1 = arrays(s1);
    disposePrefix(s1);
    expect(cache.stats()).toMatchObject({ storedRows: 3, computed: 7, hits: 0, overflowRows: 4 });
    expect(cache.stats().storedBytes).toBeLessThanOrEqual(3 * rowBytes + 10);
    const s2 = await cache.batch(keys);
    expect(arrays(s2)).toEqual(x1);
    disposePrefix(s2);
    expect(cache.stats()).toMatchObject({ storedRows: 3, computed: 11, hits: 3, overflowRows: 4 });
    const none = makeCache('float32', 0);
    disposePrefix(await none.batch([1, 2]));
    disposePrefix(await none.batch([1, 2]));
    expect(none.stats()).toMatchObject({ storedRows: 0, storedBytes: 0, computed: 4, hits: 0 });
  });

  it('stores only the inputs of read blocks; the others are empty placeholders', async () => {
    const cache = makeCache('float32', 1 << 30, [1, 3]);
    expect(cache.rowBytes).toBe(2 * 17 * 32 * 4);
    const state = await cache.batch([2, 7]);
    expect(state.inputs.map((t) => t.shape)).toEqual([[2, 0, 32], [2, 17, 32], [2, 0, 32]]);
    const want = reference([2, 7]);
    expect(maxDiff(Float32Array.from(state.inputs[1].dataSync()), want[1])).toBeLessThan(1e-5);
    expect(maxDiff(Float32Array.from(state.x.dataSync()), want[3])).toBeLessThan(1e-5);
    disposePrefix(state);
  });

  it('leaks no tensors', async () => {
    const before = tf.memory().numTensors;
    const cache = makeCache('float16', 2 * makeCache('float16', 0).rowBytes);
    for (let i = 0; i < 3; i++) disposePrefix(await cache.batch([0, 1, 2, 3, 4]));
    cache.clear();
    expect(tf.memory().numTensors).toBe(before);
  });
});
