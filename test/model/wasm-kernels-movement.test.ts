/**
 * Slice, SplitV, GatherV2 and Identity replacements against the stock wasm kernels, bit for bit, over
 * the shapes the model never makes but a caller could: rank 1–6, size-0 dims, size −1, partial
 * begin/size, negative axes, batchDims, int32/bool, invalid arguments (same error, nothing
 * leaked), and inside a gradient tape. Where the stock kernel is itself wrong (GatherV2 on an empty
 * x or with batchDims > 0; Slice out of range returns uninitialised memory) the reference is
 * TensorFlow's definition.
 */
import * as tf from '@tensorflow/tfjs';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/model/index.js';
import { bits, gatherRef, memory, outcome, size, values, withStock } from './kernel-reference.js';

type DType = 'float32' | 'int32' | 'bool';
const dtypeArb = fc.constantFrom<DType>('float32', 'int32', 'bool');
/** Shapes up to rank 6 with some size-0 dims, at most a few hundred elements. */
const shapeArb = (minRank: number) =>
  fc.array(fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 1, max: 4 }) }, { weight: 1, arbitrary: fc.constant(0) }), { minLength: minRank, maxLength: 6 }).filter((s) => size(s) <= 400);

const sliceArb = fc
  .tuple(shapeArb(1), dtypeArb, fc.nat(1000))
  .chain(([shape, dtype, seed]) =>
    fc.record({
      shape: fc.constant(shape),
      dtype: fc.constant(dtype),
      seed: fc.constant(seed),
      // begin may equal the dim (with size 0 there).
      begin: fc.tuple(...shape.map((s) => fc.integer({ min: 0, max: s }))),
      sizeFrac: fc.tuple(...shape.map(() => fc.oneof(fc.double({ min: 0, max: 1, noNaN: true }), fc.constant(-1)))),
      // begin/size given for the leading axes only (the rest default to 0 / −1), or complete.
      given: fc.integer({ min: 1, max: shape.length }),
    }),
  )
  .map((c) => {
    const sizes = c.sizeFrac.map((f, i) => (f < 0 ? -1 : Math.floor(f * (c.shape[i] - c.begin[i] + 1)) % (c.shape[i] - c.begin[i] + 1)));
    return { ...c, begin: c.begin.slice(0, c.given) as number[], size: sizes.slice(0, c.given) };
  });

/** A split of some axis into parts (sizes, with at most one −1, or an equal count). */
const splitArb = fc
  .tuple(shapeArb(1), dtypeArb, fc.nat(1000))
  .chain(([shape, dtype, seed]) =>
    fc.record({
      shape: fc.constant(shape),
      dtype: fc.constant(dtype),
      seed: fc.constant(seed),
      axis: fc.integer({ min: -shape.length, max: shape.length - 1 }),
      cuts: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 3 }),
      inferLast: fc.boolean(),
    }),
  )
  .map((c) => {
    const dim = c.shape[c.axis < 0 ? c.axis + c.shape.length : c.axis];
    const at = [...c.cuts.map((f) => Math.floor(f * (dim + 1)) % (dim + 1)), dim].sort((a, b) => a - b);
    const sizes = at.map((v, i) => v - (i === 0 ? 0 : at[i - 1]));
    if (c.inferLast) sizes[sizes.length - 1] = -1;
    return { ...c, sizes };
  });

function splitOf(c: { shape: number[]; dtype: DType; seed: number; axis: number; sizes: number[] }) {
  return () => tf.stack(tf.split(tf.tensor(values(size(c.shape), c.dtype, c.seed), c.shape, c.dtype), c.sizes, c.axis).map((t) => tf.reshape(t, [-1])).map((t) => tf.pad(t, [[0, size(c.shape) - t.size]])));
}

function sliceOf(c: { shape: number[]; dtype: DType; seed: number; begin: number[]; size: number[] }) {
  return () => tf.slice(tf.tensor(values(size(c.shape), c.dtype, c.seed), c.shape, c.dtype), c.begin, c.size);
}

const gatherArb = fc
  .tuple(shapeArb(1), dtypeArb, fc.nat(1000))
  .chain(([shape, dtype, seed]) =>
    fc.record({
      shape: fc.constant(shape),
      dtype: fc.constant(dtype),
      seed: fc.constant(seed),
      axis: fc.integer({ min: -shape.length, max: shape.length - 1 }),
      extra: fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 2 }),
      batchDims: fc.nat(2),
      // Mostly valid indices; sometimes −1 or the dim itself, which both kernels must refuse alike.
      bad: fc.oneof({ weight: 6, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.constantFrom(-1, 1) }),
    }),
  )
  .map((c) => {
    const axis = c.axis < 0 ? c.axis + c.shape.length : c.axis;
    const batchDims = Math.min(c.batchDims, axis);
    const indShape = [...c.shape.slice(0, batchDims), ...c.extra];
    const dim = c.shape[axis];
    const ind = Array.from({ length: size(indShape) }, (_, i) => (i * 5 + c.seed) % Math.max(dim, 1));
    if (c.bad !== 0 && ind.length > 0) ind[c.seed % ind.length] = c.bad < 0 ? -1 : dim;
    return { ...c, parsedAxis: axis, batchDims, indShape, ind };
  });

type GatherCase = { shape: number[]; dtype: DType; seed: number; axis: number; parsedAxis: number; batchDims: number; indShape: number[]; ind: number[] };
function gatherOf(c: GatherCase) {
  return () => tf.gather(tf.tensor(values(size(c.shape), c.dtype, c.seed), c.shape, c.dtype), tf.tensor(c.ind, c.indShape, 'int32'), c.axis, c.batchDims);
}

describe('wasm Slice / SplitV / GatherV2 / Identity replacements', () => {
  beforeAll(async () => {
    await initBackend('wasm');
  });

  it('Slice: the stock result to the bit for rank 1–6, size-0 dims, size −1 and partial begin/size', () => {
    const cases = fc.sample(sliceArb, { numRuns: 400, seed: 11 });
    const stock = withStock(() => cases.map((c) => outcome(sliceOf(c))));
    const before = memory();
    cases.forEach((c, i) => expect(outcome(sliceOf(c)), JSON.stringify(c)).toEqual(stock[i]));
    expect(stock.filter((o) => 'error' in o)).toEqual([]);
    expect(memory()).toEqual(before);
  });

  it('SplitV: the stock parts to the bit (any axis, size-0 parts, an inferred last size)', () => {
    const cases = fc.sample(splitArb, { numRuns: 200, seed: 12 });
    const stock = withStock(() => cases.map((c) => outcome(splitOf(c))));
    expect(stock.filter((o) => 'bits' in o).length).toBeGreaterThan(150);
    const before = memory();
    cases.forEach((c, i) => expect(outcome(splitOf(c)), JSON.stringify(c)).toEqual(stock[i]));
    expect(memory()).toEqual(before);
  });

  it('Slice: out of range or a negative begin throws (the stock kernel returns stale memory) and leaks nothing', () => {
    const x = tf.tensor(values(24, 'float32', 1), [2, 3, 4]);
    const before = memory();
    for (const [begin, sz] of [[[0, 2, 0], [2, 2, 4]], [[1, 0, 0], [-1, 4, -1]], [[0, 0, 5], [1, 1, 0]], [[-2, 0, 0], [1, 1, 1]], [[0, 0, 1], [1, 1, 4]]]) {
      expect(() => tf.slice(x, begin, sz), JSON.stringify([begin, sz])).toThrow(/would overflow|negative begin/);
    }
    expect(memory()).toEqual(before);
    x.dispose();
  });

  it('GatherV2: the stock result (or error) to the bit; TensorFlow’s definition where the stock kernel is wrong', () => {
    const cases = fc.sample(gatherArb, { numRuns: 400, seed: 23 });
    const valid = (c: GatherCase) => c.ind.every((v) => v >= 0 && v < c.shape[c.parsedAxis]);
    // The stock kernel returns a wrong 4-D shape, and keeps x alive, when x has no elements; with
    // batchDims > 0 it picks wrong elements ([3, 4] by [[3], [0], [1]], batchDims 1: 3, garbage, 0
    // instead of 3, 4, 9) or fails on an empty batch. Its index check comes first, though.
    const stockSane = (c: GatherCase) => size(c.shape) > 0 && (c.batchDims === 0 || !valid(c));
    const stock = withStock(() => cases.map((c) => (stockSane(c) ? outcome(gatherOf(c)) : null)));
    const before = memory();
    let refs = 0;
    cases.forEach((c, i) => {
      const mine = outcome(gatherOf(c));
      if (stock[i] !== null) expect(mine, JSON.stringify(c)).toEqual(stock[i]);
      if (!valid(c)) {
        expect(mine, JSON.stringify(c)).toEqual({ error: expect.stringMatching(/GatherV2: the index value -?\d+ is not in/) });
        return;
      }
      refs++;
      const want = gatherRef(values(size(c.shape), c.dtype, c.seed), c.shape, c.ind, c.indShape, c.parsedAxis, c.batchDims);
      const wantBits = c.dtype === 'float32' ? Array.from(new Uint32Array(Float32Array.from(want.data).buffer)) : want.data;
      expect(mine, JSON.stringify(c)).toEqual({ shape: want.shape, dtype: c.dtype, bits: wantBits });
    });
    expect(refs).toBeGreaterThan(250);
    expect(cases.filter((c) => c.batchDims > 0).length).toBeGreaterThan(50);
    expect(memory()).toEqual(before);
  });

  it('GatherV2: an axis outside [−rank, rank) gets the stock error', () => {
    for (const axis of [2, -3, 7]) {
      const run = () => outcome(() => tf.gather(tf.ones([2, 3]), tf.tensor1d([], 'int32'), axis));
      expect(run()).toEqual(withStock(run));
      expect(run()).toEqual({ error: expect.stringMatching(/axis param must be in range/) });
    }
  });

  it('Identity shares the buffer for every numeric dtype; a clone outlives its source through buffer reuse', () => {
    for (const dtype of ['float32', 'int32', 'bool'] as const) {
      const x = tf.tensor(values(37, dtype, 3), [37], dtype);
      const want = bits(x);
      const buffers = tf.engine().backend.numDataIds();
      const y = tf.clone(x);
      expect(tf.engine().backend.numDataIds()).toBe(buffers);
      x.dispose();
      // Freed memory gets reused at once: the shared buffer must not have been freed with x.
      const churn = Array.from({ length: 20 }, (_, i) => tf.fill([37], i + 100, dtype));
      expect(bits(y), dtype).toEqual(want);
      churn.forEach((t) => t.dispose());
      y.dispose();
      expect(tf.engine().backend.numDataIds()).toBe(buffers - 1);
    }
    // Strings are not on the heap: the stock kernel's copy.
    const s = tf.tensor1d(['a', 'bc']);
    const t = tf.clone(s);
    s.dispose();
    expect(t.arraySync()).toEqual(['a', 'bc']);
    t.dispose();
  });

  it('a concat\'s gradient (SplitV) inside a tape: the stock gradients to the bit', () => {
    const a = tf.tensor(values(3 * 2 * 4, 'float32', 3).map((v) => (Number.isFinite(v) && Math.abs(v) < 1e6 ? v : 1)), [3, 2, 4]);
    const b = tf.tensor(values(3 * 5 * 4, 'float32', 5).map((v) => (Number.isFinite(v) && Math.abs(v) < 1e6 ? v : 2)), [3, 5, 4]);
    const w = tf.tensor(values(3 * 7 * 4, 'float32', 7).map((v) => (Number.isFinite(v) && Math.abs(v) < 1e6 ? v : 3)), [3, 7, 4]);
    const grads = () => {
      const { value, grads: g } = tf.valueAndGrads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(tf.concat([x, y], 1), w)))([a, b]);
      const out = { value: bits(value), grads: g.map(bits) };
      tf.dispose([value, ...g]);
      return out;
    };
    const stock = withStock(grads);
    const before = memory();
    for (let i = 0; i < 2; i++) expect(grads()).toEqual(stock);
    expect(memory()).toEqual(before);
    tf.dispose([a, b, w]);
  });

  it('inside a gradient tape: Slice (and GatherV2, Identity for the saved inputs) give the stock gradients to the bit', () => {
    const x = tf.tensor(values(2 * 3 * 4 * 5 * 2, 'float32', 9).map((v) => (Number.isFinite(v) && Math.abs(v) < 1e6 ? v : 1)), [2, 3, 4, 5, 2]);
    const table = tf.tensor(values(6 * 5, 'float32', 4).map((v) => (Number.isFinite(v) && Math.abs(v) < 1e6 ? v : 2)), [6, 5]);
    const idx = tf.tensor2d([[5, 0, 5, 1]], [1, 4], 'int32');
    const f = (t: tf.Tensor) => {
      const a = tf.slice(t, [1, 0, 1, 0, 1], [1, -1, 2, 5, 1]); // [1, 3, 2, 5, 1]
      const b = tf.slice(t, [0, 1], [2, 2]); // [2, 2, 4, 5, 2]
      const g = tf.reshape(tf.gather(table, idx, 0), [4, 5]); // taped, x-independent
      return tf.add(tf.sum(tf.mul(tf.reshape(a, [6, 5]), tf.slice(g, [0, 0], [1, 5]))), tf.sum(tf.square(b)));
    };
    const grads = () => {
      const { value, grads: [g] } = tf.valueAndGrads((t: tf.Tensor) => f(t))([x]);
      const out = { value: bits(value), grad: bits(g) };
      tf.dispose([value, g]);
      return out;
    };
    const stock = withStock(grads);
    const before = memory();
    for (let i = 0; i < 3; i++) expect(grads()).toEqual(stock);
    expect(memory()).toEqual(before);
    expect(stock.grad.some((v) => v !== 0)).toBe(true);
    tf.dispose([x, table, idx]);
  });
});
