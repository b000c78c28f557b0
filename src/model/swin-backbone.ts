/**
 * A frozen Swin Transformer from a Hugging Face `SwinModel` / `SwinForImageClassification`
 * checkpoint, held as a Backbone: the patch projection, `blocks` (every block's LayerNorms,
 * q/k/v/output and MLP weights, as for ViT: [in, out], 1/√dh folded into q) and the final norm,
 * plus `swin` — the patch-embedding norm, each block's attention bias (relative position bias,
 * and the shifted-window mask folded in) and the patch-merging layers between stages.
 * A Swin has no cls token and no position embedding (unless use_absolute_embeddings): `cls` and
 * `pos` are empty [1, 0, C] tensors.
 */
import * as tf from '@tensorflow/tfjs';
import { AppError } from '../errors.js';
import type { Backbone, BlockWeights, SwinParts } from './backbone-types.js';
import type { BackboneConfig, SwinArch } from './backbone-config.js';
import type { CanonicalBlock } from './backbone-layouts.js';
import type { SafetensorsTensor } from './safetensors.js';
import { hfSwinConfig, paddedGrid } from './swin-config.js';

export interface SwinCanonical {
  patchW: Float32Array;
  patchB: Float32Array;
  patchNormG: Float32Array;
  patchNormB: Float32Array;
  absPos: Float32Array | null;
  blocks: CanonicalBlock[];
  /** [(2w−1)², heads] per block. */
  biasTables: Float32Array[];
  merges: Array<{ normG: Float32Array; normB: Float32Array; w: Float32Array }>;
  normG: Float32Array;
  normB: Float32Array;
}

type Tensors = Map<string, SafetensorsTensor>;

const fail = (msg: string): never => {
  throw new AppError('invalid_backbone', msg);
};
const shapeStr = (s: number[]) => `[${s.join(', ')}]`;

/** Tensors a Swin checkpoint carries that are not weights: integer index buffers, recomputed here. */
export const SWIN_SKIPPED = /(^|\.)(relative_position_index|attn_mask)$/;

/** The prefix of a Hugging Face Swin checkpoint's names ('' for SwinModel, 'swin.' for the classifier). */
function swinPrefix(tensors: Tensors): string {
  if (tensors.has('embeddings.patch_embeddings.projection.weight')) return '';
  if (tensors.has('swin.embeddings.patch_embeddings.projection.weight')) return 'swin.';
  return fail("config.json says model_type 'swin', but there is no 'embeddings.patch_embeddings.projection.weight' (Hugging Face SwinModel layout)");
}

export function readHfSwin(
  tensors: Tensors,
  config: Record<string, unknown>,
  preprocessor: Record<string, unknown> | undefined,
): { config: BackboneConfig; weights: SwinCanonical } {
  const cfg = hfSwinConfig(config, preprocessor);
  const a = cfg.swin!;
  const prefix = swinPrefix(tensors);
  const used = new Set<string>();
  const g = (name: string, shape: number[]): Float32Array => {
    const t = tensors.get(prefix + name);
    if (!t) fail(`missing tensor '${prefix + name}'`);
    if (t!.shape.length !== shape.length || t!.shape.some((s, i) => s !== shape[i])) {
      fail(`tensor '${prefix + name}' has shape ${shapeStr(t!.shape)}, expected ${shapeStr(shape)}`);
    }
    used.add(prefix + name);
    return t!.data;
  };
  const E = a.embedDim;
  const p = cfg.patchSize;
  const blocks: CanonicalBlock[] = [];
  const biasTables: Float32Array[] = [];
  const merges: SwinCanonical['merges'] = [];
  let i = 0;
  a.depths.forEach((depth, s) => {
    const d = a.stageWidths[s];
    const m = Math.floor(d * a.mlpRatio);
    const zeros = new Float32Array(d);
    for (let b = 0; b < depth; b++, i++) {
      const l = `encoder.layers.${s}.blocks.${b}.`;
      const bias = (name: string) => (cfg.qkvBias ? g(name, [d]) : zeros);
      const ws = a.blockWindow[i];
      biasTables.push(g(`${l}attention.self.relative_position_bias_table`, [(2 * ws - 1) ** 2, a.stageHeads[s]]));
      blocks.push({
        ln1g: g(`${l}layernorm_before.weight`, [d]), ln1b: g(`${l}layernorm_before.bias`, [d]),
        wq: g(`${l}attention.self.query.weight`, [d, d]), bq: bias(`${l}attention.self.query.bias`),
        wk: g(`${l}attention.self.key.weight`, [d, d]), bk: bias(`${l}attention.self.key.bias`),
        wv: g(`${l}attention.self.value.weight`, [d, d]), bv: bias(`${l}attention.self.value.bias`),
        wo: g(`${l}attention.output.dense.weight`, [d, d]), bo: g(`${l}attention.output.dense.bias`, [d]),
        ln2g: g(`${l}layernorm_after.weight`, [d]), ln2b: g(`${l}layernorm_after.bias`, [d]),
        w1: g(`${l}intermediate.dense.weight`, [m, d]), b1: g(`${l}intermediate.dense.bias`, [m]),
        w2: g(`${l}output.dense.weight`, [d, m]), b2: g(`${l}output.dense.bias`, [d]),
      });
    }
    if (tensors.has(`${prefix}encoder.layers.${s}.blocks.${depth}.layernorm_before.weight`)) {
      fail(`stage ${s} has more blocks than config.json's depths[${s}] = ${depth}`);
    }
    if (s < a.depths.length - 1) {
      const l = `encoder.layers.${s}.downsample.`;
      merges.push({ normG: g(`${l}norm.weight`, [4 * d]), normB: g(`${l}norm.bias`, [4 * d]), w: g(`${l}reduction.weight`, [2 * d, 4 * d]) });
    }
  });
  const weights: SwinCanonical = {
    patchW: g('embeddings.patch_embeddings.projection.weight', [E, 3, p, p]),
    patchB: g('embeddings.patch_embeddings.projection.bias', [E]),
    patchNormG: g('embeddings.norm.weight', [E]),
    patchNormB: g('embeddings.norm.bias', [E]),
    absPos: a.absolutePosition ? g('embeddings.position_embeddings', [1, cfg.numPatches, E]) : null,
    blocks,
    biasTables,
    merges,
    normG: g('layernorm.weight', [cfg.width]),
    normB: g('layernorm.bias', [cfg.width]),
  };
  for (const name of tensors.keys()) {
    if (used.has(name) || SWIN_SKIPPED.test(name) || /^classifier\.|^(swin\.)?embeddings\.mask_token$/.test(name)) continue;
    fail(`unexpected tensor '${name}': this Swin variant is not supported (Swin v1, Hugging Face SwinModel layout)`);
  }
  return { config: cfg, weights };
}

/** The relative position index of a w×w window: [N·N] into the (2w−1)² table (Swin's formula). */
export function relativeIndex(w: number): Int32Array {
  const n = w * w;
  const out = new Int32Array(n * n);
  for (let a = 0; a < n; a++) {
    for (let b = 0; b < n; b++) {
      const dy = Math.floor(a / w) - Math.floor(b / w) + w - 1;
      const dx = (a % w) - (b % w) + w - 1;
      out[a * n + b] = dy * (2 * w - 1) + dx;
    }
  }
  return out;
}

/**
 * Region label of each token of a g×g grid after the cyclic shift, by window then position in
 * the window: tokens of one window attend only within their own region (mask −100 otherwise).
 */
function shiftRegions(g: number, w: number, shift: number): Int32Array {
  const region = (v: number) => (v < g - w ? 0 : v < g - shift ? 1 : 2);
  const per = g / w;
  const out = new Int32Array(g * g);
  let k = 0;
  for (let wy = 0; wy < per; wy++) {
    for (let wx = 0; wx < per; wx++) {
      for (let y = 0; y < w; y++) for (let x = 0; x < w; x++) out[k++] = region(wy * w + y) * 3 + region(wx * w + x);
    }
  }
  return out;
}

/** [windows, heads, N, N]: bias[h, a, b] = table[index[a, b], h] (+ the shift mask). */
export function attentionBias(table: Float32Array, heads: number, a: SwinArch, block: number): { data: Float32Array; shape: [number, number, number, number] } {
  const w = a.blockWindow[block];
  const shift = a.blockShift[block];
  const n = w * w;
  const idx = relativeIndex(w);
  const bias = new Float32Array(heads * n * n);
  for (let h = 0; h < heads; h++) for (let k = 0; k < n * n; k++) bias[h * n * n + k] = table[idx[k] * heads + h];
  if (shift === 0) return { data: bias, shape: [1, heads, n, n] };
  const g = paddedGrid(a, block); // HF computes the shift mask over the padded grid
  const windows = (g / w) ** 2;
  const regions = shiftRegions(g, w, shift);
  const out = new Float32Array(windows * heads * n * n);
  for (let win = 0; win < windows; win++) {
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < n; j++) {
          const masked = regions[win * n + i] !== regions[win * n + j] ? -100 : 0;
          out[((win * heads + h) * n + i) * n + j] = bias[(h * n + i) * n + j] + masked;
        }
      }
    }
  }
  return { data: out, shape: [windows, heads, n, n] };
}

/** PyTorch Linear [out, in] → [in, out]. */
function transpose2d(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = src[r * cols + c];
  return out;
}

/** PyTorch Conv2d [d, 3, p, p] → tfjs conv2d filter [p, p, 3, d]. */
function convFilter(src: Float32Array, d: number, p: number): Float32Array {
  const out = new Float32Array(d * 3 * p * p);
  for (let o = 0; o < d; o++) {
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < p; y++) for (let x = 0; x < p; x++) out[((y * p + x) * 3 + c) * d + o] = src[((o * 3 + c) * p + y) * p + x];
    }
  }
  return out;
}

export function buildSwinBackbone(config: BackboneConfig, w: SwinCanonical, identity: string): Backbone {
  const a = config.swin!;
  const E = a.embedDim;
  const p = config.patchSize;
  const made: tf.Tensor[] = [];
  // Created outside any tidy and kept, so a caller's tidy cannot dispose the frozen weights.
  const t = <R extends tf.Rank>(data: Float32Array, shape: number[]): tf.Tensor<R> => {
    const tensor = tf.keep(tf.tensor(data, shape, 'float32')) as unknown as tf.Tensor<R>;
    made.push(tensor);
    return tensor;
  };
  try {
    const blocks: BlockWeights[] = w.blocks.map((b, i) => {
      const s = a.blockStage[i];
      const d = a.stageWidths[s];
      const m = Math.floor(d * a.mlpRatio);
      const scale = 1 / Math.sqrt(d / a.stageHeads[s]);
      const scaled = (x: Float32Array) => x.map((v) => v * scale);
      return {
        ln1g: t<tf.Rank.R1>(b.ln1g, [d]), ln1b: t<tf.Rank.R1>(b.ln1b, [d]),
        wq: t<tf.Rank.R2>(scaled(transpose2d(b.wq, d, d)), [d, d]), bq: t<tf.Rank.R1>(scaled(b.bq), [d]),
        wk: t<tf.Rank.R2>(transpose2d(b.wk, d, d), [d, d]), bk: t<tf.Rank.R1>(b.bk, [d]),
        wv: t<tf.Rank.R2>(transpose2d(b.wv, d, d), [d, d]), bv: t<tf.Rank.R1>(b.bv, [d]),
        wo: t<tf.Rank.R2>(transpose2d(b.wo, d, d), [d, d]), bo: t<tf.Rank.R1>(b.bo, [d]),
        ln2g: t<tf.Rank.R1>(b.ln2g, [d]), ln2b: t<tf.Rank.R1>(b.ln2b, [d]),
        w1: t<tf.Rank.R2>(transpose2d(b.w1, m, d), [d, m]), b1: t<tf.Rank.R1>(b.b1, [m]),
        w2: t<tf.Rank.R2>(transpose2d(b.w2, d, m), [m, d]), b2: t<tf.Rank.R1>(b.b2, [d]),
      };
    });
    const attnBias = w.biasTables.map((table, i) => {
      const { data, shape } = attentionBias(table, a.stageHeads[a.blockStage[i]], a, i);
      return t<tf.Rank.R4>(data, shape);
    });
    const merges = w.merges.map((mg, s) => {
      const d = a.stageWidths[s];
      return { normG: t<tf.Rank.R1>(mg.normG, [4 * d]), normB: t<tf.Rank.R1>(mg.normB, [4 * d]), w: t<tf.Rank.R2>(transpose2d(mg.w, 2 * d, 4 * d), [4 * d, 2 * d]) };
    });
    const swin: SwinParts = {
      patchNormG: t<tf.Rank.R1>(w.patchNormG, [E]),
      patchNormB: t<tf.Rank.R1>(w.patchNormB, [E]),
      absPos: w.absPos ? t<tf.Rank.R3>(w.absPos, [1, config.numPatches, E]) : null,
      attnBias,
      merges,
    };
    const empty = new Float32Array(0);
    return {
      config,
      identity,
      patchFilter: t<tf.Rank.R4>(convFilter(w.patchW, E, p), [p, p, 3, E]),
      patchBias: t<tf.Rank.R1>(w.patchB, [E]),
      cls: t<tf.Rank.R3>(empty, [1, 0, E]),
      pos: t<tf.Rank.R3>(empty, [1, 0, E]),
      blocks,
      normG: t<tf.Rank.R1>(w.normG, [config.width]),
      normB: t<tf.Rank.R1>(w.normB, [config.width]),
      swin,
      byteSize: made.reduce((s, x) => s + x.size * 4, 0),
      dispose: () => {
        for (const x of made) if (!x.isDisposed) x.dispose();
      },
    };
  } catch (err) {
    for (const x of made) x.dispose();
    throw err;
  }
}
