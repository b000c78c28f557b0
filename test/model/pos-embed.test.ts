/**
 * Running a backbone at another input size: position embeddings resized exactly as Hugging
 * Face's `interpolate_pos_encoding` (references computed by PyTorch, scripts/pos-embed-reference.py),
 * the size taken from BACKBONE_IMAGE_SIZE or the preprocessor config, and the resized backbone
 * an ordinary ViT at the new size.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors.js';
import { backboneFeatures, initBackend, loadBackboneFromDir, loadBackboneFromFiles, loadBackboneFromNpz, resizePosEmbed, type Backbone } from '../../src/model/index.js';
import { hfToNpz, hfToTimm } from '../helpers/checkpoint-convert.js';

const REF = JSON.parse(readFileSync(path.resolve(import.meta.dirname, '../fixtures/pos-embed-bicubic.json'), 'utf8')) as {
  cases: Array<{ grid: number; dim: number; target: number; input: number[]; hf: number[]; timm: number[] }>;
};
const HF = path.resolve(import.meta.dirname, '../fixtures/dtl-golden-hf');
const read = (name: string) => readFileSync(path.join(HF, name));

const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  expect(a.length).toBe(b.length);
  return Math.max(...Array.from(a, (v, i) => Math.abs(v - b[i])));
};

describe('resizePosEmbed', () => {
  it.each(REF.cases.map((c) => [`${c.grid}→${c.target}, d ${c.dim}`, c] as const))('%s equals HF interpolate_pos_encoding (PyTorch) to 1e-6', (_, c) => {
    const got = resizePosEmbed(Float32Array.from(c.input), c.dim, c.grid, c.target);
    expect(maxDiff(got, c.hf)).toBeLessThan(1e-6);
    // The cls row is carried over untouched.
    expect(Array.from(got.subarray(0, c.dim))).toEqual(Array.from(Float32Array.from(c.input.slice(0, c.dim))));
  });

  it.each(REF.cases.map((c) => [`${c.grid}→${c.target}, d ${c.dim}`, c] as const))('%s in timm mode equals timm resample_abs_pos_embed (PyTorch, antialias) to 1e-6', (_, c) => {
    const got = resizePosEmbed(Float32Array.from(c.input), c.dim, c.grid, c.target, 'timm');
    expect(maxDiff(got, c.timm)).toBeLessThan(1e-6);
    // The two libraries really differ, so the mode matters.
    expect(maxDiff(got, c.hf)).toBeGreaterThan(1e-2);
  });

  it('is the identity at the same size', () => {
    const c = REF.cases[0];
    const pos = Float32Array.from(c.input);
    expect(maxDiff(resizePosEmbed(pos, c.dim, c.grid, c.grid), pos)).toBeLessThan(1e-6);
    expect(maxDiff(resizePosEmbed(pos, c.dim, c.grid, c.grid, 'timm'), pos)).toBeLessThan(1e-6);
  });
});

describe('a backbone run at another size', () => {
  let base: Backbone;
  const held: Backbone[] = [];
  beforeAll(async () => {
    await initBackend('wasm');
    base = await loadBackboneFromDir(HF);
  });
  afterAll(() => {
    for (const b of [base, ...held]) b.dispose();
  });

  it('BACKBONE_IMAGE_SIZE-style option: new grid, resized embeddings, its own identity; the same size changes nothing', async () => {
    const big = await loadBackboneFromDir(HF, { imageSize: 48 });
    const same = await loadBackboneFromDir(HF, { imageSize: 32 });
    held.push(big, same);
    expect(big.config).toMatchObject({ imageSize: 48, gridSize: 6, numPatches: 36, tokens: 37, pretrainedImageSize: 32 });
    expect(big.identity).not.toBe(base.identity);
    expect(same.identity).toBe(base.identity);
    const want = resizePosEmbed(base.pos.dataSync() as Float32Array, 32, 4, 6);
    expect(maxDiff(big.pos.dataSync(), want)).toBe(0);
    // Every other weight is the checkpoint's.
    expect(maxDiff(big.blocks[3].w2.dataSync(), base.blocks[3].w2.dataSync())).toBe(0);
    const before = tf.memory().numTensors;
    const pixels = tf.randomNormal([2, 48, 48, 3], 0, 1, 'float32', 3) as tf.Tensor4D;
    const f = backboneFeatures(big, pixels);
    expect(f.shape).toEqual([2, 32]);
    expect(Array.from(f.dataSync()).every(Number.isFinite)).toBe(true);
    tf.dispose([pixels, f]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('takes the size the preprocessor config names; an explicit size wins; a size off the patch grid is refused', async () => {
    const pre = JSON.parse(read('preprocessor_config.json').toString()) as Record<string, unknown>;
    const files = { model: read('model.safetensors'), config: read('config.json'), preprocessor: Buffer.from(JSON.stringify({ ...pre, size: { height: 64, width: 64 }, resample: 3 })) };
    const fromPre = loadBackboneFromFiles(files);
    const explicit = loadBackboneFromFiles(files, { imageSize: 40 });
    held.push(fromPre, explicit);
    expect(fromPre.config).toMatchObject({ imageSize: 64, tokens: 65, preprocessorSize: 64, resample: 'bicubic' });
    expect(explicit.config.imageSize).toBe(40);
    expect(() => loadBackboneFromFiles(files, { imageSize: 36 })).toThrow(AppError);
    expect(() => loadBackboneFromFiles(files, { imageSize: 36 })).toThrow(/multiple of its 8px patches/);
  });

  it('timm and .npz checkpoints resize as timm does', async () => {
    const timm = loadBackboneFromFiles(hfToTimm(HF), { imageSize: 48 });
    const npz = await loadBackboneFromNpz(await hfToNpz(HF), { imageSize: 48 });
    held.push(timm, npz);
    const want = resizePosEmbed(base.pos.dataSync() as Float32Array, 32, 4, 6, 'timm');
    expect(maxDiff(timm.pos.dataSync(), want)).toBe(0);
    expect(maxDiff(npz.pos.dataSync(), want)).toBe(0);
  });
});
