import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  backboneFeatures,
  initBackend,
  loadBackboneFromDir,
  loadBackboneFromFiles,
  readSafetensors,
  writeSafetensors,
  type Backbone,
  type TensorToWrite,
} from '../../src/model/index.js';
import { randomPixels, tinyBackbone, tinyBackboneFiles } from '../helpers/tiny-backbone.js';
import { expectAppError, maxAbsDiff } from './expect.js';

const FIXTURES = path.resolve(import.meta.dirname, '../fixtures');

function features(b: Backbone, seed = 7): Float32Array {
  const px = randomPixels(2, b.config, seed);
  const f = backboneFeatures(b, px);
  const out = f.dataSync() as Float32Array;
  f.dispose();
  px.dispose();
  return out;
}

/** Re-expresses a Hugging Face tiny checkpoint in timm's layout (q, k, v stacked on the output axis). */
function hfToTimm(files: ReturnType<typeof tinyBackboneFiles>, depth: number, heads: number): ReturnType<typeof tinyBackboneFiles> {
  const t = readSafetensors(files.model).tensors;
  const get = (n: string) => t.get(n)!;
  const out: TensorToWrite[] = [];
  const put = (name: string, from: string) => out.push({ name, shape: get(from).shape, data: get(from).data });
  put('cls_token', 'embeddings.cls_token');
  put('pos_embed', 'embeddings.position_embeddings');
  put('patch_embed.proj.weight', 'embeddings.patch_embeddings.projection.weight');
  put('patch_embed.proj.bias', 'embeddings.patch_embeddings.projection.bias');
  for (let i = 0; i < depth; i++) {
    const l = `encoder.layer.${i}.`;
    const cat = (suffix: string) => {
      const parts = ['query', 'key', 'value'].map((n) => get(`${l}attention.attention.${n}.${suffix}`).data);
      const all = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
      let o = 0;
      for (const p of parts) {
        all.set(p, o);
        o += p.length;
      }
      return all;
    };
    const d = get(`${l}attention.attention.query.bias`).shape[0];
    out.push({ name: `blocks.${i}.attn.qkv.weight`, shape: [3 * d, d], data: cat('weight') });
    out.push({ name: `blocks.${i}.attn.qkv.bias`, shape: [3 * d], data: cat('bias') });
    put(`blocks.${i}.attn.proj.weight`, `${l}attention.output.dense.weight`);
    put(`blocks.${i}.attn.proj.bias`, `${l}attention.output.dense.bias`);
    put(`blocks.${i}.norm1.weight`, `${l}layernorm_before.weight`);
    put(`blocks.${i}.norm1.bias`, `${l}layernorm_before.bias`);
    put(`blocks.${i}.norm2.weight`, `${l}layernorm_after.weight`);
    put(`blocks.${i}.norm2.bias`, `${l}layernorm_after.bias`);
    put(`blocks.${i}.mlp.fc1.weight`, `${l}intermediate.dense.weight`);
    put(`blocks.${i}.mlp.fc1.bias`, `${l}intermediate.dense.bias`);
    put(`blocks.${i}.mlp.fc2.weight`, `${l}output.dense.weight`);
    put(`blocks.${i}.mlp.fc2.bias`, `${l}output.dense.bias`);
  }
  put('norm.weight', 'layernorm.weight');
  put('norm.bias', 'layernorm.bias');
  const config = { architecture: 'vit_custom', model_args: { num_heads: heads }, pretrained_cfg: { input_size: [3, 8, 8] } };
  return { model: writeSafetensors(out), config: new TextEncoder().encode(JSON.stringify(config)) };
}

describe('backbone loading', () => {
  beforeAll(() => initBackend('wasm'));

  it('reads both fixture folders with the config each layout implies', async () => {
    const hf = await loadBackboneFromDir(path.join(FIXTURES, 'dtl-golden-hf'));
    const timm = await loadBackboneFromDir(path.join(FIXTURES, 'dtl-golden-timm-plus'));
    try {
      expect(hf.config).toMatchObject({ layout: 'hf', width: 32, depth: 4, heads: 4, mlpDim: 64, patchSize: 8, imageSize: 32, gridSize: 4, numPatches: 16, tokens: 17, eps: 1e-12, mean: [0.5, 0.5, 0.5] });
      expect(timm.config).toMatchObject({ layout: 'timm', width: 32, depth: 4, heads: 4, mlpDim: 64, tokens: 17, eps: 1e-6, std: [0.5, 0.5, 0.5] });
      expect(hf.identity).toMatch(/^[0-9a-f]{64}$/);
      expect(hf.identity).not.toBe(timm.identity);
      expect(hf.byteSize).toBeGreaterThan(160_000);
    } finally {
      hf.dispose();
      timm.dispose();
    }
  });

  it('computes the same features from the HF layout, the vit.-prefixed HF layout and the timm layout', () => {
    const plainFiles = tinyBackboneFiles({ seed: 5 });
    const plain = loadBackboneFromFiles(plainFiles);
    const prefixed = tinyBackbone({ seed: 5, vitPrefix: true });
    const timm = loadBackboneFromFiles(hfToTimm(plainFiles, 3, 2));
    try {
      expect(timm.config.layout).toBe('timm');
      const ref = features(plain);
      expect(maxAbsDiff(features(prefixed), ref)).toBe(0);
      // Only LayerNorm's epsilon differs (1e-12 vs timm's 1e-6).
      expect(maxAbsDiff(features(timm), ref)).toBeLessThan(1e-4);
    } finally {
      plain.dispose();
      prefixed.dispose();
      timm.dispose();
    }
  });

  it('reads F16 and BF16 checkpoints', () => {
    const f32 = tinyBackbone({ seed: 9 });
    const f16 = tinyBackbone({ seed: 9, dtype: 'F16' });
    const bf16 = tinyBackbone({ seed: 9, layout: 'hf', dtype: 'BF16' });
    try {
      const ref = features(f32);
      expect(maxAbsDiff(features(f16), ref)).toBeLessThan(2e-2);
      expect(maxAbsDiff(features(bf16), ref)).toBeLessThan(2e-1);
      expect(f16.identity).not.toBe(f32.identity);
    } finally {
      f32.dispose();
      f16.dispose();
      bf16.dispose();
    }
  });

  it('has a stable identity over weights + config + preprocessor', () => {
    const a = loadBackboneFromFiles(tinyBackboneFiles({ seed: 1 }));
    const b = loadBackboneFromFiles(tinyBackboneFiles({ seed: 1 }));
    const c = loadBackboneFromFiles(tinyBackboneFiles({ seed: 2 }));
    const d = loadBackboneFromFiles(tinyBackboneFiles({ seed: 1, mean: [0.4, 0.5, 0.5] }));
    try {
      expect(a.identity).toBe(b.identity);
      expect(c.identity).not.toBe(a.identity);
      expect(d.identity).not.toBe(a.identity);
      expect(d.config.mean).toEqual([0.4, 0.5, 0.5]);
    } finally {
      for (const x of [a, b, c, d]) x.dispose();
    }
  });

  it('frees every weight tensor on dispose', () => {
    const before = tf.memory().numTensors;
    const b = tinyBackbone();
    expect(tf.memory().numTensors).toBeGreaterThan(before);
    b.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  describe('refuses bad checkpoints with one clear error naming the problem', () => {
    const drop = (name: string) => (ts: TensorToWrite[]) => ts.filter((t) => t.name !== name);
    const reshape = (name: string, shape: number[]) => (ts: TensorToWrite[]) =>
      ts.map((t) => (t.name === name ? { ...t, shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) } : t));

    it('missing tensor', async () => {
      await expectAppError(
        () => tinyBackbone({ mutate: drop('encoder.layer.1.attention.attention.key.weight') }),
        'invalid_backbone',
        /missing tensor 'encoder\.layer\.1\.attention\.attention\.key\.weight'/,
      );
      await expectAppError(() => tinyBackbone({ layout: 'timm', mutate: drop('blocks.2.mlp.fc2.bias') }), 'invalid_backbone', /missing tensor 'blocks\.2\.mlp\.fc2\.bias'/);
    });

    it('misshaped tensor', async () => {
      await expectAppError(
        () => tinyBackbone({ mutate: reshape('encoder.layer.0.intermediate.dense.weight', [12, 8]) }),
        'invalid_backbone',
        /tensor 'encoder\.layer\.0\.intermediate\.dense\.weight' has shape \[12, 8\], expected \[16, 8\]/,
      );
      await expectAppError(
        () => tinyBackbone({ layout: 'timm', mutate: reshape('blocks.1.attn.qkv.weight', [16, 8]) }),
        'invalid_backbone',
        /tensor 'blocks\.1\.attn\.qkv\.weight' has shape \[16, 8\], expected \[24, 8\]/,
      );
      await expectAppError(
        () => tinyBackbone({ layout: 'timm', mutate: reshape('pos_embed', [1, 6, 8]) }),
        'invalid_backbone',
        /pos_embed/,
      );
    });

    it('unknown layout', async () => {
      const files = tinyBackboneFiles({ mutate: (ts) => ts.map((t) => ({ ...t, name: `model.${t.name}` })) });
      await expectAppError(() => loadBackboneFromFiles(files), 'invalid_backbone', /unknown backbone layout/);
    });

    it('unsupported ViT variants and inconsistent configs', async () => {
      const extra = (ts: TensorToWrite[]) => [...ts, { name: 'blocks.0.ls1.gamma', shape: [8], data: new Float32Array(8) }];
      await expectAppError(() => tinyBackbone({ layout: 'timm', mutate: extra }), 'invalid_backbone', /unexpected tensor 'blocks\.0\.ls1\.gamma'/);
      const files = tinyBackboneFiles();
      const cfg = JSON.parse(new TextDecoder().decode(files.config));
      const withCfg = (c: unknown) => ({ ...files, config: new TextEncoder().encode(JSON.stringify(c)) });
      await expectAppError(() => loadBackboneFromFiles(withCfg({ ...cfg, num_hidden_layers: 4 })), 'invalid_backbone', /missing tensor 'encoder\.layer\.3\./);
      await expectAppError(() => loadBackboneFromFiles(withCfg({ ...cfg, num_hidden_layers: 2 })), 'invalid_backbone', /more blocks than config/);
      await expectAppError(() => loadBackboneFromFiles(withCfg({ ...cfg, num_attention_heads: 3 })), 'invalid_backbone', /not divisible by 3/);
      await expectAppError(() => loadBackboneFromFiles({ ...files, config: new TextEncoder().encode('{oops') }), 'invalid_backbone', /config\.json is not valid JSON/);
      const timm = tinyBackboneFiles({ layout: 'timm' });
      await expectAppError(
        () => loadBackboneFromFiles({ ...timm, config: new TextEncoder().encode('{"architecture":"vit_mystery"}') }),
        'invalid_backbone',
        /number of attention heads/,
      );
      await expectAppError(() => loadBackboneFromFiles({ ...files, model: files.model.subarray(0, 100) }), 'invalid_backbone', /model\.safetensors/);
    });

    it('missing folder or files', async () => {
      await expectAppError(() => loadBackboneFromDir('/nonexistent/backbone'), 'invalid_backbone', /has no model\.safetensors/);
    });
  });
});
