/**
 * The authors' checkpoint formats: Google's ViT `.npz` (as their code loads it through timm) and
 * timm's safetensors + config.json, made here from the golden HF fixture by a converter written
 * from those formats' definitions (test/helpers/checkpoint-convert.ts), load to the same features
 * as the HF folder (1e-5) and give the authors' golden logits (1e-4) with the fixture's adapter.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors.js';
import {
  backboneFeatures,
  imagesToTensor,
  initBackend,
  loadAdapter,
  loadBackbone,
  loadBackboneFromFiles,
  loadBackboneFromNpz,
  predictLogits,
  preprocessImage,
  type Backbone,
} from '../../src/model/index.js';
import { hfToNpz, hfToTimm, npy } from '../helpers/checkpoint-convert.js';
import { makeZip } from '../helpers/datasets.js';
import { makeTempDir } from '../helpers/db.js';

const HF = path.resolve(import.meta.dirname, '../fixtures/dtl-golden-hf');
const read = (name: string) => readFileSync(path.join(HF, name));

let hf: Backbone;
let pixels: tf.Tensor4D;
let hfFeatures: Float32Array;
const held: Backbone[] = [];

beforeAll(async () => {
  await initBackend('wasm');
  // Google's and timm's ViTs use LayerNorm eps 1e-6; the HF fixture's config says 1e-12. Same
  // weights, same eps, so any difference left is the layout mapping.
  const config = JSON.parse(read('config.json').toString()) as Record<string, unknown>;
  hf = loadBackboneFromFiles({ model: read('model.safetensors'), config: Buffer.from(JSON.stringify({ ...config, layer_norm_eps: 1e-6 })), preprocessor: read('preprocessor_config.json') });
  pixels = tf.randomNormal([3, 32, 32, 3], 0, 1, 'float32', 11) as tf.Tensor4D;
  const f = backboneFeatures(hf, pixels);
  hfFeatures = f.dataSync() as Float32Array;
  f.dispose();
});
afterAll(() => {
  for (const b of [hf, ...held]) b.dispose();
  pixels.dispose();
});

function maxDiffToHf(b: Backbone): number {
  const f = backboneFeatures(b, pixels);
  const x = f.dataSync();
  f.dispose();
  return Math.max(...Array.from(x, (v, i) => Math.abs(v - hfFeatures[i])));
}

async function goldenMaxDiff(b: Backbone): Promise<number> {
  const expected = JSON.parse(read('expected.json').toString()) as { cases: Array<{ image: string; logits: number[] }> };
  const { adapter } = loadAdapter(read('adapter.safetensors'), b.config);
  const imgs = await Promise.all(expected.cases.map((c) => preprocessImage(read(c.image), b.config)));
  const batch = imagesToTensor(imgs, b.config);
  const logits = predictLogits(b, adapter, batch);
  const got = logits.arraySync();
  tf.dispose([batch, logits]);
  adapter.dispose();
  return Math.max(...expected.cases.flatMap((c, i) => c.logits.map((l, j) => Math.abs(l - got[i][j]))));
}

describe('Google ViT .npz', () => {
  it('loads to the HF folder features (1e-5) and the golden logits (1e-4); identity is the sha256 of the file', async () => {
    const bytes = await hfToNpz(HF);
    const b = await loadBackboneFromNpz(bytes);
    held.push(b);
    expect(b.config).toMatchObject({ layout: 'npz', width: 32, depth: 4, heads: 4, mlpDim: 64, patchSize: 8, imageSize: 32, tokens: 17, eps: 1e-6 });
    expect(b.identity).toBe(createHash('sha256').update(bytes).digest('hex'));
    expect(maxDiffToHf(b)).toBeLessThan(1e-5);
    expect(await goldenMaxDiff(b)).toBeLessThan(1e-4);
  });

  it('reads deflated archives and the opt/target/ prefix; BACKBONE may name the file or a folder holding it', async () => {
    const dir = await makeTempDir('dtl-npz');
    try {
      await writeFile(path.join(dir, 'ViT-T_8.npz'), await hfToNpz(HF, { compress: true, prefix: 'opt/target/' }));
      const fromFile = await loadBackbone(path.join(dir, 'ViT-T_8.npz'));
      const fromDir = await loadBackbone(dir);
      held.push(fromFile, fromDir);
      expect(fromDir.identity).toBe(fromFile.identity);
      expect(maxDiffToHf(fromFile)).toBeLessThan(1e-5);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses what is not a plain ViT .npz, naming the problem', async () => {
    const refuse = async (bytes: Uint8Array, message: RegExp) => {
      const err = await loadBackboneFromNpz(bytes).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(AppError);
      expect((err as AppError).code).toBe('invalid_backbone');
      expect((err as AppError).message).toMatch(message);
    };
    await refuse(read('model.safetensors'), /not an \.npz \(zip\) file/);
    await refuse(await makeZip([{ name: 'cls.npy', data: npy([1, 1, 4], new Float32Array(4)) }]), /missing array 'embedding\/kernel'/);
    await refuse(await makeZip([{ name: 'embedding/kernel.npy', data: Buffer.from('not numpy') }]), /'embedding\/kernel': not a \.npy array/);
    const int32 = npy([2], new Float32Array(2));
    int32.write("'<i4'", int32.indexOf("'<f4'"), 'latin1');
    await refuse(await makeZip([{ name: 'embedding/kernel.npy', data: int32 }]), /dtype '<i4' is not supported/);
    // A hybrid (ResNet stem) checkpoint: refused by name, not loaded without its stem.
    await refuse(await makeZip([{ name: 'embedding/kernel.npy', data: npy([8, 8, 3, 32], new Float32Array(8 * 8 * 3 * 32)) }, { name: 'conv_root/kernel.npy', data: npy([1], new Float32Array(1)) }]), /hybrid ResNet-ViT/);
    // The converted checkpoint less one array: named.
    await refuse(await hfToNpz(HF, { drop: 'Transformer/encoderblock_3/MlpBlock_3/Dense_1/bias' }), /missing array 'Transformer\/encoderblock_3\/MlpBlock_3\/Dense_1\/bias'/);
  });
});

describe('timm safetensors + config.json', () => {
  it('loads to the HF folder features (1e-5) and the golden logits (1e-4)', async () => {
    const b = loadBackboneFromFiles(hfToTimm(HF));
    held.push(b);
    expect(b.config).toMatchObject({ layout: 'timm', heads: 4, eps: 1e-6, imageSize: 32 });
    expect(maxDiffToHf(b)).toBeLessThan(1e-5);
    expect(await goldenMaxDiff(b)).toBeLessThan(1e-4);
  });
});
