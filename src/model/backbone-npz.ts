/**
 * Google's ViT checkpoints (`ViT-B_16.npz` and kin: the flax arrays the DTL authors' code loads
 * through timm's `_load_weights`) → the canonical weights. Names and layouts, as timm maps them:
 *
 *   embedding/kernel [p, p, 3, d] (HWIO), embedding/bias     → patch projection
 *   cls [1, 1, d]; Transformer/posembed_input/pos_embedding   → cls token, position embeddings
 *   Transformer/encoderblock_{i}/LayerNorm_0, LayerNorm_2     → norm1, norm2 (scale, bias)
 *   …/MultiHeadDotProductAttention_1/{query,key,value}/kernel [d, heads, d/heads], bias [heads, d/heads]
 *   …/MultiHeadDotProductAttention_1/out/kernel [heads, d/heads, d], bias [d]
 *   …/MlpBlock_3/Dense_0, Dense_1 (kernel [in, out])           → fc1, fc2
 *   Transformer/encoder_norm                                   → final norm
 *
 * big_vision exports (MultiHeadDotProductAttention_0, MlpBlock_0, LayerNorm_0/1) and an
 * `opt/target/` prefix are read too; `head/*` and `pre_logits/*` are ignored. Everything the
 * architecture needs follows from the shapes (heads from the query kernel); flax's LayerNorm
 * eps is 1e-6 and the ImageNet-21k ViTs normalise with mean = std = 0.5.
 */
import { createHash } from 'node:crypto';
import { AppError } from '../errors.js';
import type { BackboneConfig } from './backbone-config.js';
import type { CanonicalBlock, CanonicalWeights } from './backbone-layouts.js';
import type { NpyArray } from './npz.js';

const fail = (msg: string): never => {
  throw new AppError('invalid_backbone', `npz checkpoint: ${msg}`);
};

const shapeStr = (s: number[]) => `[${s.join(', ')}]`;

/** out[j, i] = src[i, j] for src [rows, cols]: flax kernels are [in, out], PyTorch Linear [out, in]. */
function transpose(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = src[i * cols + j];
  return out;
}

/** HWIO [p, p, 3, d] → PyTorch Conv2d [d, 3, p, p]. */
function hwioToOihw(src: Float32Array, p: number, d: number): Float32Array {
  const out = new Float32Array(src.length);
  for (let y = 0; y < p; y++) {
    for (let x = 0; x < p; x++) {
      for (let c = 0; c < 3; c++) for (let o = 0; o < d; o++) out[((o * 3 + c) * p + y) * p + x] = src[((y * p + x) * 3 + c) * d + o];
    }
  }
  return out;
}

export function readNpzViT(arrays: Map<string, NpyArray>, npzBytes: Uint8Array): { config: BackboneConfig; weights: CanonicalWeights; identity: string } {
  const prefix = !arrays.has('embedding/kernel') && arrays.has('opt/target/embedding/kernel') ? 'opt/target/' : '';
  const used = new Set<string>();
  const get = (name: string, shape?: number[]): NpyArray => {
    const a = arrays.get(prefix + name);
    if (!a) return fail(`missing array '${prefix + name}'`);
    if (shape && (a.shape.length !== shape.length || a.shape.some((s, i) => s !== shape[i]))) {
      fail(`array '${prefix + name}' has shape ${shapeStr(a.shape)}, expected ${shapeStr(shape)}`);
    }
    used.add(prefix + name);
    return a;
  };
  if (arrays.has(`${prefix}conv_root/kernel`)) fail('hybrid ResNet-ViT checkpoints are not supported (plain ViT only)');
  const patch = get('embedding/kernel');
  if (patch.shape.length !== 4 || patch.shape[0] !== patch.shape[1] || patch.shape[2] !== 3) {
    fail(`array 'embedding/kernel' has shape ${shapeStr(patch.shape)}, expected [patch, patch, 3, width]`);
  }
  const [p, , , d] = patch.shape;
  const bigVision = arrays.has(`${prefix}Transformer/encoderblock_0/MlpBlock_0/Dense_0/kernel`);
  const [mha, mlp, ln1, ln2] = bigVision
    ? ['MultiHeadDotProductAttention_0', 'MlpBlock_0', 'LayerNorm_0', 'LayerNorm_1']
    : ['MultiHeadDotProductAttention_1', 'MlpBlock_3', 'LayerNorm_0', 'LayerNorm_2'];
  let depth = 0;
  while (arrays.has(`${prefix}Transformer/encoderblock_${depth}/${ln1}/scale`)) depth++;
  if (depth === 0) fail(`missing array '${prefix}Transformer/encoderblock_0/${ln1}/scale'`);
  const q0 = get(`Transformer/encoderblock_0/${mha}/query/kernel`);
  if (q0.shape.length !== 3 || q0.shape[0] !== d || q0.shape[1] * q0.shape[2] !== d) {
    fail(`array 'Transformer/encoderblock_0/${mha}/query/kernel' has shape ${shapeStr(q0.shape)}, expected [${d}, heads, ${d}/heads]`);
  }
  const [, heads, dh] = q0.shape;
  const m = get(`Transformer/encoderblock_0/${mlp}/Dense_0/kernel`).shape[1] ?? 0;
  if (!arrays.has(`${prefix}cls`)) fail("no 'cls' token: only class-token ViTs are supported (not global-average or MAP-pooled big_vision models)");
  const posName = arrays.has(`${prefix}Transformer/posembed_input/pos_embedding`) ? 'Transformer/posembed_input/pos_embedding' : 'pos_embedding';
  const pos = get(posName);
  const tokens = pos.shape[1] ?? 0;
  const grid = Math.round(Math.sqrt(tokens - 1));
  if (pos.shape.length !== 3 || pos.shape[0] !== 1 || pos.shape[2] !== d || grid * grid !== tokens - 1) {
    fail(`array '${posName}' has shape ${shapeStr(pos.shape)}, expected [1, 1 + a square number of patches, ${d}]`);
  }
  const blocks: CanonicalBlock[] = [];
  for (let i = 0; i < depth; i++) {
    const b = `Transformer/encoderblock_${i}/`;
    const qkv = (n: string) => ({
      w: transpose(get(`${b}${mha}/${n}/kernel`, [d, heads, dh]).data, d, d),
      b: get(`${b}${mha}/${n}/bias`, [heads, dh]).data,
    });
    const [q, k, v] = [qkv('query'), qkv('key'), qkv('value')];
    blocks.push({
      ln1g: get(`${b}${ln1}/scale`, [d]).data, ln1b: get(`${b}${ln1}/bias`, [d]).data,
      wq: q.w, bq: q.b, wk: k.w, bk: k.b, wv: v.w, bv: v.b,
      // out/kernel [heads, dh, d] is a [d_in, d_out] matrix once heads and dh are flattened.
      wo: transpose(get(`${b}${mha}/out/kernel`, [heads, dh, d]).data, d, d), bo: get(`${b}${mha}/out/bias`, [d]).data,
      ln2g: get(`${b}${ln2}/scale`, [d]).data, ln2b: get(`${b}${ln2}/bias`, [d]).data,
      w1: transpose(get(`${b}${mlp}/Dense_0/kernel`, [d, m]).data, d, m), b1: get(`${b}${mlp}/Dense_0/bias`, [m]).data,
      w2: transpose(get(`${b}${mlp}/Dense_1/kernel`, [m, d]).data, m, d), b2: get(`${b}${mlp}/Dense_1/bias`, [d]).data,
    });
  }
  const weights: CanonicalWeights = {
    cls: get('cls', [1, 1, d]).data,
    pos: pos.data,
    patchW: hwioToOihw(patch.data, p, d),
    patchB: get('embedding/bias', [d]).data,
    normG: get('Transformer/encoder_norm/scale', [d]).data,
    normB: get('Transformer/encoder_norm/bias', [d]).data,
    blocks,
  };
  for (const name of arrays.keys()) {
    const rest = name.slice(prefix.length);
    if (!used.has(name) && !/^(head|pre_logits)\//.test(rest)) fail(`unexpected array '${name}': this ViT variant is not supported`);
  }
  const config: BackboneConfig = {
    layout: 'npz',
    width: d,
    depth,
    heads,
    mlpDim: m,
    patchSize: p,
    imageSize: grid * p,
    gridSize: grid,
    numPatches: grid * grid,
    tokens,
    eps: 1e-6,
    mean: [0.5, 0.5, 0.5],
    std: [0.5, 0.5, 0.5],
    qkvBias: true,
  };
  return { config, weights, identity: createHash('sha256').update(npzBytes).digest('hex') };
}
