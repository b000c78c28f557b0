/**
 * The Swin fixture's Hugging Face checkpoint rewritten in timm's layouts (patch merging at the end
 * of a stage as in the original / the authors' code, or at the start of the next as in timm ≥ 0.9;
 * q/k/v stacked) loads to the same features; config and checkpoint errors are one clear message.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  backboneFeatures,
  imagesToTensor,
  initBackend,
  loadAdapter,
  loadBackboneFromDir,
  loadBackboneFromFiles,
  predictLogits,
  preprocessImage,
  readSafetensors,
  writeSafetensors,
  type Backbone,
  type TensorToWrite,
} from '../../src/model/index.js';
import { maxAbsDiff } from './expect.js';

const DIR = path.resolve(import.meta.dirname, '../fixtures/dtl-golden-swin-hf');
const hf = readSafetensors(readFileSync(path.join(DIR, 'model.safetensors')), { skip: (n) => n.endsWith('relative_position_index') }).tensors;
const hfConfig = JSON.parse(readFileSync(path.join(DIR, 'config.json'), 'utf8')) as { depths: number[] };
const expected = JSON.parse(readFileSync(path.join(DIR, 'expected.json'), 'utf8')) as { cases: Array<{ image: string; logits: number[] }> };

/** HF names → timm names (q, k, v stacked into qkv); merging at the end of stage s or the start of s+1. */
function toTimm(mergeAtEnd: boolean, newHead: boolean): TensorToWrite[] {
  const out: TensorToWrite[] = [];
  const put = (name: string, from: string) => {
    const t = hf.get(from)!;
    out.push({ name, shape: t.shape, data: t.data });
  };
  put('patch_embed.proj.weight', 'embeddings.patch_embeddings.projection.weight');
  put('patch_embed.proj.bias', 'embeddings.patch_embeddings.projection.bias');
  put('patch_embed.norm.weight', 'embeddings.norm.weight');
  put('patch_embed.norm.bias', 'embeddings.norm.bias');
  hfConfig.depths.forEach((depth, s) => {
    for (let b = 0; b < depth; b++) {
      const h = `encoder.layers.${s}.blocks.${b}.`;
      const t = `layers.${s}.blocks.${b}.`;
      put(`${t}norm1.weight`, `${h}layernorm_before.weight`);
      put(`${t}norm1.bias`, `${h}layernorm_before.bias`);
      put(`${t}attn.relative_position_bias_table`, `${h}attention.self.relative_position_bias_table`);
      const [q, k, v] = ['query', 'key', 'value'].map((n) => hf.get(`${h}attention.self.${n}.weight`)!);
      const [qb, kb, vb] = ['query', 'key', 'value'].map((n) => hf.get(`${h}attention.self.${n}.bias`)!);
      const d = q.shape[0];
      const w = new Float32Array(3 * d * d);
      [q, k, v].forEach((x, j) => w.set(x.data, j * d * d));
      const bias = new Float32Array(3 * d);
      [qb, kb, vb].forEach((x, j) => bias.set(x.data, j * d));
      out.push({ name: `${t}attn.qkv.weight`, shape: [3 * d, d], data: w }, { name: `${t}attn.qkv.bias`, shape: [3 * d], data: bias });
      put(`${t}attn.proj.weight`, `${h}attention.output.dense.weight`);
      put(`${t}attn.proj.bias`, `${h}attention.output.dense.bias`);
      put(`${t}norm2.weight`, `${h}layernorm_after.weight`);
      put(`${t}norm2.bias`, `${h}layernorm_after.bias`);
      put(`${t}mlp.fc1.weight`, `${h}intermediate.dense.weight`);
      put(`${t}mlp.fc1.bias`, `${h}intermediate.dense.bias`);
      put(`${t}mlp.fc2.weight`, `${h}output.dense.weight`);
      put(`${t}mlp.fc2.bias`, `${h}output.dense.bias`);
    }
    if (s < hfConfig.depths.length - 1) {
      const m = `layers.${mergeAtEnd ? s : s + 1}.downsample.`;
      put(`${m}norm.weight`, `encoder.layers.${s}.downsample.norm.weight`);
      put(`${m}norm.bias`, `encoder.layers.${s}.downsample.norm.bias`);
      put(`${m}reduction.weight`, `encoder.layers.${s}.downsample.reduction.weight`);
    }
  });
  put('norm.weight', 'layernorm.weight');
  put('norm.bias', 'layernorm.bias');
  // A classifier the loader ignores.
  out.push({ name: newHead ? 'head.fc.weight' : 'head.weight', shape: [2, 64], data: new Float32Array(128) });
  return out;
}

const timmConfig = (extra: Record<string, unknown> = {}) =>
  new TextEncoder().encode(
    JSON.stringify({
      architecture: 'swin_custom_patch2_window4_64',
      num_classes: 2,
      pretrained_cfg: { input_size: [3, 64, 64], mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], interpolation: 'bicubic' },
      ...extra,
    }),
  );

describe('Swin checkpoint layouts', () => {
  let reference: Backbone;
  let pixels: tf.Tensor4D;
  let features: Float32Array;

  beforeAll(async () => {
    await initBackend('wasm');
    reference = await loadBackboneFromDir(DIR);
    const images = await Promise.all(expected.cases.map((c) => preprocessImage(readFileSync(path.join(DIR, c.image)), reference.config)));
    pixels = imagesToTensor(images, reference.config);
    const f = backboneFeatures(reference, pixels);
    features = f.dataSync() as Float32Array;
    f.dispose();
  });
  afterAll(() => {
    pixels?.dispose();
    reference?.dispose();
  });

  it.each([
    ['merging at the end of each stage (original, the authors\u2019 code), head.*', true, false],
    ['merging at the start of the next stage (timm \u2265 0.9), head.fc.*', false, true],
  ])('timm layout, %s: the HF folder\u2019s features (1e-6) and the golden logits (1e-4)', (_, atEnd, newHead) => {
    const backbone = loadBackboneFromFiles({ model: writeSafetensors(toTimm(atEnd, newHead)), config: timmConfig() });
    try {
      expect(backbone.config.layout).toBe('timm');
      expect(backbone.config.swin!.stageWidths).toEqual([8, 16, 32, 64]);
      expect(backbone.config.swin!.blockShift).toEqual(reference.config.swin!.blockShift);
      const f = backboneFeatures(backbone, pixels);
      expect(maxAbsDiff(f.dataSync(), features)).toBeLessThan(1e-6);
      f.dispose();
      const { adapter } = loadAdapter(readFileSync(path.join(DIR, 'adapter.safetensors')), backbone.config);
      const logits = predictLogits(backbone, adapter, pixels).arraySync();
      expected.cases.forEach((c, i) => expect(maxAbsDiff(logits[i], c.logits)).toBeLessThan(1e-4));
      adapter.dispose();
    } finally {
      backbone.dispose();
    }
  });

  it('the HF classifier layout (swin. prefix, classifier.*) and an integer relative_position_index load too', async () => {
    const model = readFileSync(path.join(DIR, 'model.safetensors'));
    const all = readSafetensors(model, { skip: (n) => n.endsWith('relative_position_index') }).tensors;
    const tensors: TensorToWrite[] = [...all].map(([name, t]) => ({ name: `swin.${name}`, shape: t.shape, data: t.data }));
    tensors.push({ name: 'classifier.weight', shape: [2, 64], data: new Float32Array(128) });
    const backbone = loadBackboneFromFiles({ model: writeSafetensors(tensors), config: readFileSync(path.join(DIR, 'config.json')) });
    const f = backboneFeatures(backbone, pixels);
    expect(maxAbsDiff(f.dataSync(), features)).toBe(0);
    f.dispose();
    backbone.dispose();
  });

  it('errors: a missing tensor, a wrong depth, an input size off the patch grid, an unknown tensor', () => {
    const config = readFileSync(path.join(DIR, 'config.json'));
    const model = readFileSync(path.join(DIR, 'model.safetensors'));
    const withConfig = (edit: (c: Record<string, unknown>) => void) => {
      const c = JSON.parse(config.toString()) as Record<string, unknown>;
      edit(c);
      return new TextEncoder().encode(JSON.stringify(c));
    };
    expect(() => loadBackboneFromFiles({ model, config: withConfig((c) => (c.depths = [2, 2, 1, 2])) })).toThrow(/stage 2 has more blocks than config.json's depths\[2\] = 1/);
    expect(() => loadBackboneFromFiles({ model, config: withConfig((c) => (c.depths = [2, 2, 2, 3])) })).toThrow(/missing tensor 'encoder.layers.3.blocks.2.attention.self.relative_position_bias_table'/);
    expect(() => loadBackboneFromFiles({ model, config }, { imageSize: 127 })).toThrow(/multiple of its 2px patches/);
    const timm = toTimm(true, false).filter((t) => t.name !== 'layers.1.blocks.0.attn.qkv.weight');
    expect(() => loadBackboneFromFiles({ model: writeSafetensors(timm), config: timmConfig() })).toThrow(/missing tensor 'layers.1.blocks.0.attn.qkv.weight'/);
    const extra = [...toTimm(true, false), { name: 'layers.0.blocks.0.attn.extra', shape: [1], data: new Float32Array(1) }];
    expect(() => loadBackboneFromFiles({ model: writeSafetensors(extra), config: timmConfig() })).toThrow(/unexpected tensor 'layers.0.blocks.0.attn.extra'/);
  });
});
