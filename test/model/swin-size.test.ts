/**
 * A Swin run at another input size than its pretraining one (issue 18 item 4), against
 * scripts/fixtures/swin_dtl_reference.py run the way Hugging Face's SwinModel runs it (padding to
 * whole windows, odd grids padded before a merging, windows and shifts kept from pretraining unless
 * a grid fits in one): `dtl-host predict` with BACKBONE_IMAGE_SIZE to 1e-4, the preprocessor
 * config's size doing the same, and the split, several-adapter suffix and training at that size.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AdamW,
  backboneFeatures,
  createAdapter,
  disposePrefix,
  forwardSuffix,
  imagesToTensor,
  initBackend,
  loadAdapter,
  loadBackboneFromDir,
  predictLogits,
  preprocessImage,
  runPrefix,
  saveAdapter,
  splitPoint,
  suffixFeatures,
  trainStep,
  trainStepFullTape,
  type Adapter,
  type AdapterSpec,
  type Backbone,
} from '../../src/model/index.js';
import type { SwinCanonical } from '../../src/model/swin-backbone.js';
import { cropBiasTable, swinAtImageSize } from '../../src/model/swin-size.js';
import { randomAdapter } from '../helpers/tiny-backbone.js';
import { maxAbsDiff } from './expect.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const FIXTURES = path.join(ROOT, 'test/fixtures');
const run = promisify(execFile);

interface Expected {
  backbone: string;
  adapter: string;
  imageSize: number;
  cases: Array<{ image: string; logits: number[]; probabilities: number[]; top1: string; backboneFeatures: number[] }>;
}
const expectedOf = (name: string) => JSON.parse(readFileSync(path.join(FIXTURES, name, 'expected.json'), 'utf8')) as Expected;

// 72: HF's padding and odd merges; 56: padding, the last stage one whole window; 40: the last
// stage's grid (3) below its pretraining window (4), where HF raises and the table is cut.
describe.each(['dtl-golden-swin-72', 'dtl-golden-swin-56', 'dtl-golden-swin-40'])('dtl-host predict on %s (BACKBONE_IMAGE_SIZE)', (name) => {
  it('matches the reference\u2019s logits and probabilities to 1e-4', async () => {
    const dir = path.join(FIXTURES, name);
    const expected = expectedOf(name);
    const images = expected.cases.map((c) => path.join(dir, c.image));
    const { stdout } = await run(process.execPath, [path.join(ROOT, 'bin/dtl-host.js'), 'predict', '--backbone', path.join(dir, expected.backbone), '--adapter', path.join(dir, expected.adapter), ...images], {
      cwd: ROOT,
      env: { ...process.env, TFJS_BACKEND: 'wasm', BACKBONE_ENGINE: 'tfjs', BACKBONE_IMAGE_SIZE: String(expected.imageSize) },
      timeout: 60_000,
    });
    const out = JSON.parse(stdout) as Array<{ logits: number[]; probabilities: number[]; top: Array<{ label: string }> }>;
    expect(out).toHaveLength(expected.cases.length);
    out.forEach((o, i) => {
      expect(maxAbsDiff(o.logits, expected.cases[i].logits)).toBeLessThan(1e-4);
      expect(maxAbsDiff(o.probabilities, expected.cases[i].probabilities)).toBeLessThan(1e-4);
      expect(o.top[0].label).toBe(expected.cases[i].top1);
    });
  });
});

describe('a Swin at 72 px (pretrained at 64)', () => {
  const expected = expectedOf('dtl-golden-swin-72');
  const plusDir = path.join(FIXTURES, 'dtl-golden-swin-plus');
  let backbone: Backbone;
  let native: Backbone;
  let plus: Adapter;
  let dtl: Adapter;
  let pixels: tf.Tensor4D;

  beforeAll(async () => {
    await initBackend('wasm');
    backbone = await loadBackboneFromDir(plusDir, { imageSize: 72 });
    native = await loadBackboneFromDir(plusDir);
    plus = loadAdapter(readFileSync(path.join(plusDir, 'adapter.safetensors')), backbone.config).adapter;
    dtl = loadAdapter(readFileSync(path.join(FIXTURES, 'dtl-golden-swin-hf', 'adapter.safetensors')), backbone.config).adapter;
    const dir = path.join(FIXTURES, 'dtl-golden-swin-72');
    const images = await Promise.all(expected.cases.map((c) => preprocessImage(readFileSync(path.join(dir, c.image)), backbone.config)));
    pixels = imagesToTensor(images, backbone.config);
  });
  afterAll(() => {
    for (const x of [pixels, plus, dtl, backbone, native]) x?.dispose();
  });

  it('sets stages, windows and shifts as Hugging Face does at that size; another identity; its own size is a no-op', async () => {
    const c = backbone.config;
    expect(c).toMatchObject({ imageSize: 72, pretrainedImageSize: 64, gridSize: 36, tokens: 1296, numPatches: 1296, width: 64, depth: 8 });
    expect(c.swin!.stageGrids).toEqual([36, 18, 9, 5]);
    expect(c.swin!.blockWindow).toEqual([4, 4, 4, 4, 4, 4, 4, 4]);
    // The last stage was one unshifted 4×4 window at 64 px and stays unshifted (HF sets it at init).
    expect(c.swin!.blockShift).toEqual([0, 2, 0, 2, 0, 2, 0, 0]);
    expect(backbone.identity).not.toBe(native.identity);
    const same = await loadBackboneFromDir(plusDir, { imageSize: 64 });
    expect(same.identity).toBe(native.identity);
    expect(same.config).toEqual(native.config);
    same.dispose();
  });

  it('backbone features and the DTL+ logits match the reference at 72 px to 1e-4', () => {
    const features = backboneFeatures(backbone, pixels);
    const logits = predictLogits(backbone, plus, pixels);
    const [f, l] = [features.arraySync(), logits.arraySync()];
    expected.cases.forEach((c, i) => {
      expect(maxAbsDiff(f[i], c.backboneFeatures)).toBeLessThan(1e-4);
      expect(maxAbsDiff(l[i], c.logits)).toBeLessThan(1e-4);
    });
    features.dispose();
    logits.dispose();
  });

  it('preprocessor_config.json naming 72 px runs the Swin at 72 px, as BACKBONE_IMAGE_SIZE does', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'swin-72-'));
    try {
      for (const f of ['model.safetensors', 'config.json']) copyFileSync(path.join(plusDir, f), path.join(dir, f));
      const pre = JSON.parse(readFileSync(path.join(plusDir, 'preprocessor_config.json'), 'utf8')) as Record<string, unknown>;
      writeFileSync(path.join(dir, 'preprocessor_config.json'), JSON.stringify({ ...pre, size: { height: 72, width: 72 } }));
      const sized = await loadBackboneFromDir(dir);
      expect(sized.config.imageSize).toBe(72);
      const [a, b] = [predictLogits(sized, plus, pixels), predictLogits(backbone, plus, pixels)];
      expect(maxAbsDiff(a.dataSync(), b.dataSync())).toBe(0);
      for (const x of [a, b, sized]) x.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the split, an untrained adapter and one suffix for several adapters (DTL, DTL+, mixed splits) hold at 72 px', () => {
    const before = tf.memory().numTensors;
    const reference = backboneFeatures(backbone, pixels);
    const blank = createAdapter(backbone.config, { rank: 2, beta: 100, loraBeforeBlocks: [1, 2, 3, 4, 5], addAfterBlocks: [2, 5, 7], fusionKernel: 3, labels: ['a', 'b'] }, { seed: 3 });
    const s0 = runPrefix(backbone, pixels, splitPoint(blank.spec, backbone.config.depth));
    const [features] = suffixFeatures(backbone, s0, [{ adapter: blank, rows: [0, 1] }]);
    expect(maxAbsDiff(features.dataSync(), reference.dataSync())).toBeLessThan(1e-5);
    for (const x of [features, reference, blank]) x.dispose();
    disposePrefix(s0);
    const extra = randomAdapter(backbone.config, { rank: 3, beta: 50, loraBeforeBlocks: [5, 6], addAfterBlocks: [6, 7], fusionKernel: 2, labels: ['x', 'y'] }, 7, 0.2);
    const adapters = [dtl, plus, extra];
    const state = runPrefix(backbone, pixels, Math.min(...adapters.map((a) => splitPoint(a.spec, backbone.config.depth))));
    const groups = [{ adapter: dtl, rows: [1, 0] }, { adapter: plus, rows: [0] }, { adapter: extra, rows: [1, 1, 0] }];
    const logits = forwardSuffix(backbone, state, groups);
    groups.forEach((g, k) => {
      const alone = predictLogits(backbone, g.adapter, pixels);
      const rows = alone.arraySync();
      const got = logits[k].arraySync();
      g.rows.forEach((r, j) => expect(maxAbsDiff(got[j], rows[r])).toBeLessThan(1e-5));
      alone.dispose();
    });
    for (const l of logits) l.dispose();
    disposePrefix(state);
    // One rank throughout (the stacks' single-concat branch), a group per row, reads in every stage.
    const same = randomAdapter(backbone.config, { rank: 2, beta: 20, loraBeforeBlocks: [0, 3, 4, 6], addAfterBlocks: [4, 6, 7], fusionKernel: 0, labels: ['x', 'y'] }, 9, 0.3);
    const s2 = runPrefix(backbone, pixels, 4);
    const pair = forwardSuffix(backbone, s2, [{ adapter: same, rows: [1] }, { adapter: dtl, rows: [0, 1] }]);
    for (const [k, adapter] of [same, dtl].entries()) {
      const alone = predictLogits(backbone, adapter, pixels);
      const rows = alone.arraySync();
      const got = pair[k].arraySync();
      (k === 0 ? [1] : [0, 1]).forEach((r, j) => expect(maxAbsDiff(got[j], rows[r])).toBeLessThan(1e-5));
      alone.dispose();
    }
    for (const l of pair) l.dispose();
    disposePrefix(s2);
    same.dispose();
    extra.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('training at 72 px: the blockwise step equals the full tape, the loss falls, nothing leaks', () => {
    const spec: AdapterSpec = { rank: 2, beta: 100, loraBeforeBlocks: [2, 3, 4, 5, 6, 7], addAfterBlocks: [4, 5, 6, 7], fusionKernel: 3, labels: ['a', 'b'] };
    const seeded = randomAdapter(backbone.config, spec, 11, 0.1);
    const start = saveAdapter(seeded);
    seeded.dispose();
    const [a, b] = [0, 1].map(() => loadAdapter(start, backbone.config, { trainable: true }).adapter);
    const [oa, ob] = [new AdamW({ lr: 3e-2 }), new AdamW({ lr: 3e-2 })];
    const labels = [0, 1];
    const state = runPrefix(backbone, pixels, splitPoint(spec, backbone.config.depth));
    const losses: number[] = [];
    let tensors = 0;
    for (let step = 0; step < 3; step++) {
      const la = trainStep({ backbone, adapter: a, optimizer: oa, state, labels, tapeBlocks: 0 }).loss;
      const lb = trainStepFullTape({ backbone, adapter: b, optimizer: ob, pixels, labels });
      expect(Math.abs(la - lb)).toBeLessThan(1e-5);
      losses.push(la);
      if (step === 0) tensors = tf.memory().numTensors;
    }
    expect(tf.memory().numTensors).toBe(tensors);
    losses.slice(1).forEach((l, i) => expect(l).toBeLessThan(losses[i]));
    disposePrefix(state);
    for (const x of [a, b, oa, ob]) x.dispose();
  });
});

describe('Swin sizes', () => {
  beforeAll(async () => {
    await initBackend('wasm');
  });

  it('a smaller window reads the table entries of its own offsets', () => {
    const heads = 2;
    const table = Float32Array.from({ length: 7 * 7 * heads }, (_, k) => k);
    const cut = cropBiasTable(table, heads, 4, 3);
    expect(cut.length).toBe(5 * 5 * heads);
    // offset (dy, dx) = (−2, −2) is row (−2 + 3)·7 + (−2 + 3) = 8 of the 7×7 table; (0, 0) is row 24 there, 12 here.
    expect(Array.from(cut.subarray(0, heads))).toEqual([16, 17]);
    expect(Array.from(cut.subarray(12 * heads, 13 * heads))).toEqual([48, 49]);
    expect(cropBiasTable(table, heads, 4, 4)).toBe(table);
  });

  it('absolute position embeddings are resized on the patch grid (constant stays constant, ramp stays monotone)', async () => {
    const b = await loadBackboneFromDir(path.join(FIXTURES, 'dtl-golden-swin-hf'));
    const cfg = { ...b.config, swin: { ...b.config.swin!, absolutePosition: true } };
    b.dispose();
    const E = cfg.swin.embedDim;
    const g0 = cfg.gridSize;
    const absPos = Float32Array.from({ length: g0 * g0 * E }, (_, k) => (k % E === 0 ? 0.7 : Math.floor(k / E) % g0));
    const tables = cfg.swin.blockWindow.map((w, i) => new Float32Array((2 * w - 1) ** 2 * cfg.swin.stageHeads[cfg.swin.blockStage[i]]));
    const sized = swinAtImageSize({ config: cfg, weights: { absPos, biasTables: tables } as unknown as SwinCanonical, identity: 'x' }, 72);
    const pos = sized.weights.absPos!;
    expect(pos.length).toBe(36 * 36 * E);
    for (let t = 0; t < 36 * 36; t++) expect(pos[t * E]).toBeCloseTo(0.7, 6);
    const row = Array.from({ length: 36 }, (_, x) => pos[(5 * 36 + x) * E + 1]);
    row.slice(1).forEach((v, x) => expect(v).toBeGreaterThan(row[x]));
    expect(sized.identity).not.toBe('x');
  });

  it('refuses a size that is not a multiple of the patch size', async () => {
    await expect(loadBackboneFromDir(path.join(FIXTURES, 'dtl-golden-swin-hf'), { imageSize: 71 })).rejects.toThrow(/multiple of its 2px patches/);
  });
});
