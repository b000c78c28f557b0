/**
 * Small random ViT backbones and adapters built in code, for tests of any module: the real
 * loader path (safetensors bytes + config JSON → loadBackboneFromFiles) on checkpoints of a few
 * kilobytes. Deterministic for a given seed.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import {
  createAdapter,
  loadBackboneFromFiles,
  writeSafetensors,
  type Adapter,
  type AdapterSpec,
  type Backbone,
  type BackboneConfig,
  type BackboneFiles,
  type SafetensorsDtype,
  type TensorToWrite,
} from '../../src/model/index.js';

export interface TinyBackboneOptions {
  layout?: 'hf' | 'timm';
  width?: number;
  depth?: number;
  heads?: number;
  mlpDim?: number;
  patchSize?: number;
  imageSize?: number;
  seed?: number;
  /** Stored dtype of every tensor. */
  dtype?: SafetensorsDtype;
  /** HF only: put every tensor under `vit.` and add pooler/classifier tensors (ViTForImageClassification). */
  vitPrefix?: boolean;
  mean?: [number, number, number];
  std?: [number, number, number];
  /** Edit the tensor list before it is written (drop, reshape, rename) to make broken checkpoints. */
  mutate?: (tensors: TensorToWrite[]) => TensorToWrite[];
}

/** Seeded generator (mulberry32) with a normal sampler. */
export function rng(seed: number): { uniform: () => number; normal: () => number } {
  let a = seed >>> 0;
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
  const normal = () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
  return { uniform, normal };
}

const defaults = { layout: 'hf', width: 8, depth: 3, heads: 2, mlpDim: 16, patchSize: 4, imageSize: 8, seed: 1 } as const;

/** The bytes of a random backbone checkpoint in the chosen layout. */
export function tinyBackboneFiles(opts: TinyBackboneOptions = {}): BackboneFiles {
  const o = { ...defaults, ...opts };
  const { width: d, depth, mlpDim: m, patchSize: p, imageSize: s } = o;
  const tokens = (s / p) ** 2 + 1;
  const r = rng(o.seed);
  const tensors: TensorToWrite[] = [];
  const add = (name: string, shape: number[], kind: 'w' | 'b' | 'g' | 'e') => {
    const n = shape.reduce((a, b) => a * b, 1);
    const fanIn = shape.length > 1 ? n / shape[0] : 1;
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const z = r.normal();
      data[i] = kind === 'w' ? z / Math.sqrt(fanIn) : kind === 'g' ? 1 + 0.1 * z : kind === 'e' ? 0.5 * z : 0.05 * z;
    }
    tensors.push({ name, shape, data, dtype: o.dtype });
  };
  if (o.layout === 'hf') {
    const pre = o.vitPrefix ? 'vit.' : '';
    add(`${pre}embeddings.cls_token`, [1, 1, d], 'e');
    add(`${pre}embeddings.position_embeddings`, [1, tokens, d], 'e');
    add(`${pre}embeddings.patch_embeddings.projection.weight`, [d, 3, p, p], 'w');
    add(`${pre}embeddings.patch_embeddings.projection.bias`, [d], 'b');
    for (let i = 0; i < depth; i++) {
      const l = `${pre}encoder.layer.${i}.`;
      for (const n of ['query', 'key', 'value']) {
        add(`${l}attention.attention.${n}.weight`, [d, d], 'w');
        add(`${l}attention.attention.${n}.bias`, [d], 'b');
      }
      add(`${l}attention.output.dense.weight`, [d, d], 'w');
      add(`${l}attention.output.dense.bias`, [d], 'b');
      add(`${l}intermediate.dense.weight`, [m, d], 'w');
      add(`${l}intermediate.dense.bias`, [m], 'b');
      add(`${l}output.dense.weight`, [d, m], 'w');
      add(`${l}output.dense.bias`, [d], 'b');
      add(`${l}layernorm_before.weight`, [d], 'g');
      add(`${l}layernorm_before.bias`, [d], 'b');
      add(`${l}layernorm_after.weight`, [d], 'g');
      add(`${l}layernorm_after.bias`, [d], 'b');
    }
    add(`${pre}layernorm.weight`, [d], 'g');
    add(`${pre}layernorm.bias`, [d], 'b');
    if (o.vitPrefix) {
      add('vit.pooler.dense.weight', [d, d], 'w');
      add('vit.pooler.dense.bias', [d], 'b');
      add('classifier.weight', [5, d], 'w');
      add('classifier.bias', [5], 'b');
    }
  } else {
    add('cls_token', [1, 1, d], 'e');
    add('pos_embed', [1, tokens, d], 'e');
    add('patch_embed.proj.weight', [d, 3, p, p], 'w');
    add('patch_embed.proj.bias', [d], 'b');
    for (let i = 0; i < depth; i++) {
      const l = `blocks.${i}.`;
      add(`${l}norm1.weight`, [d], 'g');
      add(`${l}norm1.bias`, [d], 'b');
      add(`${l}attn.qkv.weight`, [3 * d, d], 'w');
      add(`${l}attn.qkv.bias`, [3 * d], 'b');
      add(`${l}attn.proj.weight`, [d, d], 'w');
      add(`${l}attn.proj.bias`, [d], 'b');
      add(`${l}norm2.weight`, [d], 'g');
      add(`${l}norm2.bias`, [d], 'b');
      add(`${l}mlp.fc1.weight`, [m, d], 'w');
      add(`${l}mlp.fc1.bias`, [m], 'b');
      add(`${l}mlp.fc2.weight`, [d, m], 'w');
      add(`${l}mlp.fc2.bias`, [d], 'b');
    }
    add('norm.weight', [d], 'g');
    add('norm.bias', [d], 'b');
  }
  const final = o.mutate ? o.mutate(tensors) : tensors;
  const mean = o.mean ?? [0.5, 0.5, 0.5];
  const std = o.std ?? [0.5, 0.5, 0.5];
  const config =
    o.layout === 'hf'
      ? {
          model_type: 'vit',
          hidden_size: d,
          num_hidden_layers: depth,
          num_attention_heads: o.heads,
          intermediate_size: m,
          hidden_act: 'gelu',
          layer_norm_eps: 1e-12,
          image_size: s,
          patch_size: p,
          num_channels: 3,
          qkv_bias: true,
        }
      : {
          architecture: `vit_custom_patch${p}_${s}`,
          model_args: { embed_dim: d, depth, num_heads: o.heads, patch_size: p, img_size: s },
          pretrained_cfg: { mean, std, input_size: [3, s, s] },
        };
  const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
  return {
    model: writeSafetensors(final),
    config: enc(config),
    preprocessor: o.layout === 'hf' ? enc({ image_mean: mean, image_std: std }) : undefined,
  };
}

export function tinyBackbone(opts: TinyBackboneOptions = {}): Backbone {
  return loadBackboneFromFiles(tinyBackboneFiles(opts));
}

/** Writes the checkpoint as a backbone folder (model.safetensors, config.json, preprocessor_config.json). */
export async function writeTinyBackboneDir(dir: string, opts: TinyBackboneOptions = {}): Promise<void> {
  const files = tinyBackboneFiles(opts);
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'model.safetensors'), files.model);
  await writeFile(path.join(dir, 'config.json'), files.config);
  if (files.preprocessor) await writeFile(path.join(dir, 'preprocessor_config.json'), files.preprocessor);
}

/** A batch of random normalised images [n, S, S, 3]. */
export function randomPixels(n: number, cfg: BackboneConfig, seed = 7): tf.Tensor4D {
  const r = rng(seed);
  const s = cfg.imageSize;
  const data = new Float32Array(n * s * s * 3);
  for (let i = 0; i < data.length; i++) data[i] = r.uniform() * 2 - 1;
  return tf.tensor4d(data, [n, s, s, 3]);
}

export function tinySpec(overrides: Partial<AdapterSpec> = {}): AdapterSpec {
  return { rank: 2, beta: 100, loraBeforeBlocks: [0, 1, 2], addAfterBlocks: [1, 2], fusionKernel: 0, labels: ['a', 'b', 'c'], ...overrides };
}

/**
 * A trainable adapter whose every weight is random (B included, so the CSN actually changes the
 * features — a fresh adapter has B = 0 and is the identity).
 */
export function randomAdapter(cfg: BackboneConfig, spec: AdapterSpec, seed = 3, scale = 0.3): Adapter {
  const adapter = createAdapter(cfg, spec, { seed });
  const r = rng(seed + 1000);
  for (const v of adapter.trainableVariables()) {
    const data = new Float32Array(v.size);
    for (let i = 0; i < data.length; i++) data[i] = r.normal() * scale;
    tf.tidy(() => v.assign(tf.tensor(data, v.shape)));
  }
  return adapter;
}
