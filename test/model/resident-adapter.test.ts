/**
 * Resident adapters (serving's form: weights in one typed array off the backend, float16 or
 * float32) against the tensor adapters they are made from: the golden fixtures through both
 * precisions, the float16 error bar, the batch materialisation's tensor hygiene, the byte count.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  disposePrefix,
  forwardSuffix,
  imagesToTensor,
  initBackend,
  loadAdapter,
  loadBackboneFromDir,
  loadResidentAdapter,
  materialise,
  materialiseGroups,
  parseAdapterFile,
  predictLogits,
  preprocessImage,
  residentByteSize,
  residentFromWeights,
  residentWeights,
  runPrefix,
  saveAdapter,
  type Adapter,
  type AdapterSpec,
  type Backbone,
} from '../../src/model/index.js';
import { INT12_BLOCK, int12Bytes } from '../../src/model/int12.js';
import { randomAdapter, rng, tinyBackbone } from '../helpers/tiny-backbone.js';
import { halfStep, maxAbsDiff } from './expect.js';

const FIXTURES = path.resolve(import.meta.dirname, '../fixtures');

interface Expected {
  cases: Array<{ image: string; logits: number[]; top1: string }>;
}

/** Largest |a − b| over the row, relative to the row's largest |b|: the float16 bar is 1e-3. */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let scale = 0;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]));
  return maxAbsDiff(a, b) / scale;
}

const argmax = (a: number[]) => a.indexOf(Math.max(...a));

function logitsOf(backbone: Backbone, adapter: Adapter, pixels: tf.Tensor4D): number[][] {
  const t = predictLogits(backbone, adapter, pixels);
  try {
    return t.arraySync();
  } finally {
    t.dispose();
  }
}

describe.each(['dtl-golden-hf', 'dtl-golden-timm-plus'])('resident adapter, golden fixture %s', (name) => {
  const dir = path.join(FIXTURES, name);
  const expected = JSON.parse(readFileSync(path.join(dir, 'expected.json'), 'utf8')) as Expected;
  const file = readFileSync(path.join(dir, 'adapter.safetensors'));
  let backbone: Backbone;
  let pixels: tf.Tensor4D;
  let reference: number[][];

  beforeAll(async () => {
    await initBackend('wasm');
    backbone = await loadBackboneFromDir(dir);
    const images = await Promise.all(expected.cases.map((c) => preprocessImage(readFileSync(path.join(dir, c.image)), backbone.config)));
    pixels = imagesToTensor(images, backbone.config);
    const tensors = loadAdapter(file, backbone.config).adapter;
    reference = logitsOf(backbone, tensors, pixels);
    tensors.dispose();
  });
  afterAll(() => {
    pixels.dispose();
    backbone.dispose();
  });

  it('float32: the same numbers as the tensor adapter, and the authors\' logits to 1e-4', () => {
    const res = loadResidentAdapter(file, backbone.config, 'float32');
    expect(res.precision).toBe('float32');
    const adapter = materialise(res);
    const got = logitsOf(backbone, adapter, pixels);
    adapter.dispose();
    expected.cases.forEach((c, i) => {
      expect(maxAbsDiff(got[i], reference[i])).toBe(0);
      expect(maxAbsDiff(got[i], c.logits)).toBeLessThan(1e-4);
      expect(res.spec.labels[argmax(got[i])]).toBe(c.top1);
    });
  });

  it.each(['float16', 'compact'] as const)('%s: same top-1 and logits within 1e-3 relative of float32', (precision) => {
    const res = loadResidentAdapter(file, backbone.config, precision);
    expect(res.precision).toBe(precision);
    expect(res.weights).toBeInstanceOf(Uint16Array);
    expect(res.head !== null).toBe(precision === 'compact');
    const adapter = materialise(res);
    expect(adapter.temperature).toBe(loadAdapter(file, backbone.config).adapter.temperature);
    const got = logitsOf(backbone, adapter, pixels);
    adapter.dispose();
    let worst = 0;
    let worstAbs = 0;
    expected.cases.forEach((c, i) => {
      expect(res.spec.labels[argmax(got[i])]).toBe(c.top1);
      worst = Math.max(worst, relErr(got[i], reference[i]));
      worstAbs = Math.max(worstAbs, maxAbsDiff(got[i], reference[i]));
    });
    expect(worst).toBeLessThan(1e-3);
    // The measured error, for src/model/README.md.
    console.log(`[${precision}] ${name}: max |Δlogit| ${worstAbs.toExponential(2)}, relative ${worst.toExponential(2)}`);
  });
});

describe('resident adapters on a tiny backbone', () => {
  let backbone: Backbone;
  const specs: AdapterSpec[] = [
    { rank: 2, beta: 100, loraBeforeBlocks: [0, 1, 2], addAfterBlocks: [1, 2], fusionKernel: 0, labels: ['p', 'q', 'r'] },
    { rank: 3, beta: 50, loraBeforeBlocks: [1, 2], addAfterBlocks: [2], fusionKernel: 3, labels: ['a', 'b', 'c', 'd', 'e'] },
  ];
  let files: Buffer[];

  beforeAll(async () => {
    await initBackend('wasm');
    backbone = tinyBackbone({ seed: 4 });
    files = specs.map((spec, i) => {
      const a = randomAdapter(backbone.config, spec, 40 + i, 0.3);
      try {
        return saveAdapter(a);
      } finally {
        a.dispose();
      }
    });
  });
  afterAll(() => backbone.dispose());

  it('holds the weights in one array: float32 exactly, float16 to half-precision rounding', () => {
    for (const f of files) {
      const parsed = parseAdapterFile(f, backbone.config);
      const w32 = residentWeights(loadResidentAdapter(f, backbone.config, 'float32'));
      const w16 = residentWeights(loadResidentAdapter(f, backbone.config, 'float16'));
      const wc = residentWeights(loadResidentAdapter(f, backbone.config, 'compact'));
      // compact: the head weight to half a 12-bit step of its block's largest value, the rest as float16.
      const head = parsed.weights.headW;
      head.forEach((v, j) => {
        const block = head.subarray(j - (j % INT12_BLOCK), j - (j % INT12_BLOCK) + INT12_BLOCK);
        const absmax = Math.max(...Array.from(block, Math.abs));
        expect(Math.abs(wc.headW[j] - v)).toBeLessThanOrEqual(halfStep(absmax));
      });
      expect(maxAbsDiff(wc.headB, w16.headB)).toBe(0);
      for (const [i, p] of w16.reads) expect(maxAbsDiff(wc.reads.get(i)!.a, p.a) + maxAbsDiff(wc.reads.get(i)!.b, p.b)).toBe(0);
      const pairs: Array<[Float32Array, Float32Array, Float32Array]> = [
        [parsed.weights.headW, w32.headW, w16.headW],
        [parsed.weights.headB, w32.headB, w16.headB],
      ];
      for (const [i, p] of parsed.weights.reads) pairs.push([p.a, w32.reads.get(i)!.a, w16.reads.get(i)!.a], [p.b, w32.reads.get(i)!.b, w16.reads.get(i)!.b]);
      if (parsed.weights.fusion) pairs.push([parsed.weights.fusion, w32.fusion!, w16.fusion!]);
      for (const [want, got32, got16] of pairs) {
        expect(maxAbsDiff(got32, want)).toBe(0);
        // Round to nearest: at most half a unit in the last of float16's 11 significant bits.
        want.forEach((v, j) => expect(Math.abs(got16[j] - v)).toBeLessThanOrEqual(Math.abs(v) * 2 ** -11 + 2 ** -25));
      }
    }
  });

  it('counts its bytes: the weights plus its JS objects', () => {
    const r16 = loadResidentAdapter(files[1], backbone.config, 'float16');
    const r32 = loadResidentAdapter(files[1], backbone.config, 'float32');
    const d = backbone.config.width;
    const weights = 2 * 2 * d * 3 + 9 * d + 5 * d + 5;
    expect(r16.weights.length).toBe(weights);
    expect(r16.byteSize).toBe(residentByteSize(r16.spec, r16.weights));
    expect(r16.byteSize - 2 * weights).toBe(r32.byteSize - 4 * weights);
    expect(r16.byteSize).toBeGreaterThan(2 * weights);
    const rc = loadResidentAdapter(files[1], backbone.config, 'compact');
    const headW = 5 * d;
    expect(rc.weights.length).toBe(weights - headW);
    expect(rc.head!.length).toBe(headW);
    expect(rc.byteSize).toBe(residentByteSize(rc.spec, rc.weights, rc.head));
    expect(rc.byteSize).toBeGreaterThanOrEqual(r16.byteSize - 2 * headW + int12Bytes(headW));
  });

  it('keeps an adapter float32 when a weight (CSN or head) is beyond float16 range', () => {
    for (const where of ['read', 'head'] as const) {
      const parsed = parseAdapterFile(files[0], backbone.config);
      const first = Math.min(...parsed.weights.reads.keys());
      const arr = where === 'read' ? parsed.weights.reads.get(first)!.a : parsed.weights.headW;
      arr[3] = 1e5;
      for (const precision of ['float16', 'compact'] as const) {
        const res = residentFromWeights(backbone.config, parsed.spec, parsed.weights, 1, precision);
        expect(res.precision, `${where} ${precision}`).toBe('float32');
        expect(res.head).toBeNull();
        const w = residentWeights(res);
        expect(where === 'read' ? w.reads.get(first)!.a[3] : w.headW[3]).toBe(1e5);
      }
    }
  });

  it('materialises a batch for its forward and frees every tensor after, batch after batch', () => {
    const residents = files.map((f) => loadResidentAdapter(f, backbone.config, 'float16'));
    const pixels = tf.randomUniform([3, backbone.config.imageSize, backbone.config.imageSize, 3], -1, 1, 'float32', 7) as tf.Tensor4D;
    const before = tf.memory().numTensors;
    let first: number[][][] | undefined;
    for (let rep = 0; rep < 4; rep++) {
      const state = runPrefix(backbone, pixels, 0);
      // The same resident adapter in two groups is materialised once.
      const mats = materialiseGroups([
        { adapter: residents[0], rows: [0, 1] },
        { adapter: residents[1], rows: [2, 0] },
        { adapter: residents[0], rows: [2] },
      ]);
      expect(mats.groups[0].adapter).toBe(mats.groups[2].adapter);
      const logits = forwardSuffix(backbone, state, mats.groups);
      const values = logits.map((t) => t.arraySync());
      for (const t of logits) t.dispose();
      mats.dispose();
      mats.dispose();
      disposePrefix(state);
      expect(tf.memory().numTensors).toBe(before);
      if (!first) first = values;
      else expect(values).toEqual(first);
    }
    // The batched result is each adapter alone, on the same (float16-held) weights.
    residents.forEach((res, g) => {
      const alone = materialise(res);
      const rows = logitsOf(backbone, alone, pixels);
      alone.dispose();
      const groupRows = g === 0 ? [0, 1] : [2, 0];
      groupRows.forEach((r, k) => expect(maxAbsDiff(first![g][k], rows[r])).toBeLessThan(1e-5));
    });
    expect(tf.memory().numTensors).toBe(before);
    pixels.dispose();
  });

  it('a ViT-B-sized head (768 × 100): float16 and compact logits within 1e-3 relative of float32', () => {
    const r = rng(11);
    const d = 768;
    const c = 100;
    const spec: AdapterSpec = { rank: 2, beta: 100, loraBeforeBlocks: [0], addAfterBlocks: [0], fusionKernel: 0, labels: Array.from({ length: c }, (_, k) => `c${k}`) };
    const cfg = { ...backbone.config, width: d, depth: 1 };
    // Trained-looking heads: the benches' uniform ±0.05, and normal with a few 10× outliers.
    const heads = [
      Float32Array.from({ length: d * c }, () => (r.uniform() - 0.5) * 0.1),
      Float32Array.from({ length: d * c }, (_, i) => r.normal() * 0.02 * (i % 997 === 0 ? 10 : 1)),
    ];
    const x = Array.from({ length: 16 }, () => Float64Array.from({ length: d }, () => r.normal()));
    const logits = (w: Float32Array, b: Float32Array) =>
      x.map((row) => Array.from({ length: c }, (_, k) => row.reduce((s, v, j) => s + v * w[j * c + k], b[k])));
    for (const headW of heads) {
      const weights = {
        reads: new Map([[0, { a: new Float32Array(d * 2), b: new Float32Array(2 * d) }]]),
        fusion: null,
        headW,
        headB: Float32Array.from({ length: c }, () => r.normal() * 0.1),
      };
      const want = logits(headW, weights.headB);
      for (const precision of ['float16', 'compact'] as const) {
        const got = residentWeights(residentFromWeights(cfg, spec, weights, 1, precision));
        const have = logits(got.headW, got.headB);
        const worst = Math.max(...have.map((row, i) => relErr(row, want[i])));
        expect(worst, precision).toBeLessThan(1e-3);
        have.forEach((row, i) => expect(argmax(row)).toBe(argmax(want[i])));
        console.log(`[${precision}] ViT-B head: logits relative error ${worst.toExponential(4)}`);
      }
    }
  });

  it('refuses to materialise a disposed adapter', () => {
    const res = loadResidentAdapter(files[0], backbone.config, 'float16');
    res.dispose();
    expect(res.disposed).toBe(true);
    expect(() => materialise(res)).toThrow(/disposed/);
  });
});
