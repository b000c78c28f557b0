/**
 * Converts a Hugging Face ViT checkpoint (PyTorch layout) into the other public layouts, written
 * from those formats' own definitions rather than from our loaders: Google's flax `.npz` (kernels
 * [in, out], q/k/v kernels [d, heads, d/heads], out kernel [heads, d/heads, d], patch kernel
 * HWIO) and timm's safetensors (fused qkv, timm names) with a timm `config.json`.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { readSafetensors, writeSafetensors, type SafetensorsTensor, type TensorToWrite } from '../../src/model/index.js';
import { makeZip } from './datasets.js';

/** A `.npy` (format 1.0) of a little-endian float array. */
export function npy(shape: number[], data: Float32Array, dtype: '<f4' | '<f8' = '<f4'): Buffer {
  const dims = shape.length === 1 ? `${shape[0]},` : shape.join(', ');
  let header = `{'descr': '${dtype}', 'fortran_order': False, 'shape': (${dims}), }`;
  // numpy pads the header with spaces so the data starts 64-byte aligned, ending it with '\n'.
  header += ' '.repeat(64 - ((10 + header.length + 1) % 64)) + '\n';
  const head = Buffer.alloc(10);
  head.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  head.writeUInt16LE(header.length, 8);
  const body = dtype === '<f4' ? Buffer.from(data.buffer, data.byteOffset, data.byteLength) : Buffer.from(Float64Array.from(data).buffer);
  return Buffer.concat([head, Buffer.from(header, 'latin1'), body]);
}

/** [rows, cols] → [cols, rows] */
function t2(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = src[r * cols + c];
  return out;
}

function hfTensors(dir: string): Map<string, SafetensorsTensor> {
  return readSafetensors(readFileSync(path.join(dir, 'model.safetensors'))).tensors;
}

/** The folder's HF ViT as Google's `ViT-*.npz` (+ a classifier head the loader must ignore). */
export async function hfToNpz(dir: string, opts: { compress?: boolean; prefix?: string; drop?: string } = {}): Promise<Buffer> {
  const hf = hfTensors(dir);
  const g = (n: string) => hf.get(n)!;
  const d = g('embeddings.cls_token').shape[2];
  const heads = (JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as { num_attention_heads: number }).num_attention_heads;
  const dh = d / heads;
  const arrays: Array<[string, number[], Float32Array]> = [];
  const conv = g('embeddings.patch_embeddings.projection.weight');
  const p = conv.shape[2];
  const hwio = new Float32Array(conv.data.length);
  for (let o = 0; o < d; o++) for (let c = 0; c < 3; c++) for (let y = 0; y < p; y++) for (let x = 0; x < p; x++) {
    hwio[((y * p + x) * 3 + c) * d + o] = conv.data[((o * 3 + c) * p + y) * p + x];
  }
  arrays.push(['embedding/kernel', [p, p, 3, d], hwio], ['embedding/bias', [d], g('embeddings.patch_embeddings.projection.bias').data]);
  arrays.push(['cls', [1, 1, d], g('embeddings.cls_token').data]);
  const pos = g('embeddings.position_embeddings');
  arrays.push(['Transformer/posembed_input/pos_embedding', pos.shape, pos.data]);
  arrays.push(['Transformer/encoder_norm/scale', [d], g('layernorm.weight').data], ['Transformer/encoder_norm/bias', [d], g('layernorm.bias').data]);
  for (let i = 0; hf.has(`encoder.layer.${i}.layernorm_before.weight`); i++) {
    const l = `encoder.layer.${i}.`;
    const b = `Transformer/encoderblock_${i}/`;
    const mha = `${b}MultiHeadDotProductAttention_1/`;
    arrays.push([`${b}LayerNorm_0/scale`, [d], g(`${l}layernorm_before.weight`).data], [`${b}LayerNorm_0/bias`, [d], g(`${l}layernorm_before.bias`).data]);
    for (const n of ['query', 'key', 'value']) {
      // PyTorch y = W x (W [out, in]); flax y = x K (K [in, heads, dh]): K = Wᵀ, reshaped.
      arrays.push([`${mha}${n}/kernel`, [d, heads, dh], t2(g(`${l}attention.attention.${n}.weight`).data, d, d)]);
      arrays.push([`${mha}${n}/bias`, [heads, dh], g(`${l}attention.attention.${n}.bias`).data]);
    }
    arrays.push([`${mha}out/kernel`, [heads, dh, d], t2(g(`${l}attention.output.dense.weight`).data, d, d)], [`${mha}out/bias`, [d], g(`${l}attention.output.dense.bias`).data]);
    arrays.push([`${b}LayerNorm_2/scale`, [d], g(`${l}layernorm_after.weight`).data], [`${b}LayerNorm_2/bias`, [d], g(`${l}layernorm_after.bias`).data]);
    const w1 = g(`${l}intermediate.dense.weight`);
    const m = w1.shape[0];
    arrays.push([`${b}MlpBlock_3/Dense_0/kernel`, [d, m], t2(w1.data, m, d)], [`${b}MlpBlock_3/Dense_0/bias`, [m], g(`${l}intermediate.dense.bias`).data]);
    arrays.push([`${b}MlpBlock_3/Dense_1/kernel`, [m, d], t2(g(`${l}output.dense.weight`).data, d, m)], [`${b}MlpBlock_3/Dense_1/bias`, [d], g(`${l}output.dense.bias`).data]);
  }
  const items = arrays.filter(([name]) => name !== opts.drop).map(([name, shape, data]) => ({ name: `${opts.prefix ?? ''}${name}.npy`, data: npy(shape, data), compress: opts.compress }));
  items.push({ name: `${opts.prefix ?? ''}head/kernel.npy`, data: npy([d, 10], new Float32Array(d * 10).fill(0.01), '<f8'), compress: opts.compress });
  return makeZip(items);
}

/** The folder's HF ViT as a timm checkpoint: `model.safetensors` (timm names, fused qkv) + `config.json`. */
export function hfToTimm(dir: string): { model: Buffer; config: Buffer } {
  const hf = hfTensors(dir);
  const cfg = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as { num_attention_heads: number; image_size: number; patch_size: number; hidden_size: number; num_hidden_layers: number };
  const out: TensorToWrite[] = [];
  const put = (name: string, from: string) => out.push({ name, shape: hf.get(from)!.shape, data: hf.get(from)!.data });
  put('cls_token', 'embeddings.cls_token');
  put('pos_embed', 'embeddings.position_embeddings');
  put('patch_embed.proj.weight', 'embeddings.patch_embeddings.projection.weight');
  put('patch_embed.proj.bias', 'embeddings.patch_embeddings.projection.bias');
  const d = cfg.hidden_size;
  for (let i = 0; i < cfg.num_hidden_layers; i++) {
    const l = `encoder.layer.${i}.`;
    const b = `blocks.${i}.`;
    put(`${b}norm1.weight`, `${l}layernorm_before.weight`);
    put(`${b}norm1.bias`, `${l}layernorm_before.bias`);
    const qkv = ['query', 'key', 'value'].map((n) => hf.get(`${l}attention.attention.${n}.weight`)!.data);
    const qkvB = ['query', 'key', 'value'].map((n) => hf.get(`${l}attention.attention.${n}.bias`)!.data);
    out.push({ name: `${b}attn.qkv.weight`, shape: [3 * d, d], data: Float32Array.from([...qkv[0], ...qkv[1], ...qkv[2]]) });
    out.push({ name: `${b}attn.qkv.bias`, shape: [3 * d], data: Float32Array.from([...qkvB[0], ...qkvB[1], ...qkvB[2]]) });
    put(`${b}attn.proj.weight`, `${l}attention.output.dense.weight`);
    put(`${b}attn.proj.bias`, `${l}attention.output.dense.bias`);
    put(`${b}norm2.weight`, `${l}layernorm_after.weight`);
    put(`${b}norm2.bias`, `${l}layernorm_after.bias`);
    put(`${b}mlp.fc1.weight`, `${l}intermediate.dense.weight`);
    put(`${b}mlp.fc1.bias`, `${l}intermediate.dense.bias`);
    put(`${b}mlp.fc2.weight`, `${l}output.dense.weight`);
    put(`${b}mlp.fc2.bias`, `${l}output.dense.bias`);
  }
  put('norm.weight', 'layernorm.weight');
  put('norm.bias', 'layernorm.bias');
  // timm's hub config.json, as `timm.models.push_to_hf_hub` writes it.
  const config = {
    architecture: `vit_custom_patch${cfg.patch_size}_${cfg.image_size}`,
    num_classes: 0,
    num_features: d,
    global_pool: 'token',
    model_args: { embed_dim: d, depth: cfg.num_hidden_layers, num_heads: cfg.num_attention_heads, patch_size: cfg.patch_size, img_size: cfg.image_size },
    pretrained_cfg: { input_size: [3, cfg.image_size, cfg.image_size], interpolation: 'bicubic', mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], crop_pct: 1.0 },
  };
  return { model: writeSafetensors(out), config: Buffer.from(JSON.stringify(config)) };
}
