/**
 * The Swin Transformer's pieces on tfjs ops, for tokens x [n, g·g, C] in row-major grid order:
 * (shifted-)window attention with the relative position bias, the block, patch merging, and the
 * CSN addition on a stage's grid. Every op here has a gradient on every backend (slices, concats,
 * reshapes, transposes, 2-D and batched matMuls), so training runs through them unchanged. None
 * of these tidy: callers decide the scope.
 */
import * as tf from '@tensorflow/tfjs';
import type { Backbone } from './backbone.js';
import type { BackboneConfig } from './backbone-config.js';
import { paddedGrid } from './swin-config.js';
import { depthwiseSame, gelu, layerNorm, linear, swish } from './layers.js';

/** torch.roll over the two grid axes of [n, g, g, C] by `by` (negative: towards the origin). */
function roll2d(x: tf.Tensor4D, by: number): tf.Tensor4D {
  const g = x.shape[1];
  const k = ((by % g) + g) % g;
  if (k === 0) return x;
  const [n, , , c] = x.shape;
  const rows = tf.concat([tf.slice(x, [0, g - k, 0, 0], [n, k, g, c]), tf.slice(x, [0, 0, 0, 0], [n, g - k, g, c])], 1);
  return tf.concat([tf.slice(rows, [0, 0, g - k, 0], [n, g, k, c]), tf.slice(rows, [0, 0, 0, 0], [n, g, g - k, c])], 2) as tf.Tensor4D;
}

/** [n, g, g, C] → windows [n·(g/w)², w·w, C], windows in row-major order. */
function partition(x: tf.Tensor4D, w: number): tf.Tensor3D {
  const [n, g, , c] = x.shape;
  const p = g / w;
  return tf.reshape(tf.transpose(tf.reshape(x, [n, p, w, p, w, c]), [0, 1, 3, 2, 4, 5]), [n * p * p, w * w, c]);
}

/** The inverse of partition. */
function unpartition(win: tf.Tensor3D, n: number, g: number, w: number): tf.Tensor4D {
  const c = win.shape[2];
  const p = g / w;
  return tf.reshape(tf.transpose(tf.reshape(win, [n, p, p, w, w, c]), [0, 1, 3, 2, 4, 5]), [n, g, g, c]);
}

/** (S)W-MSA of block i on normalised tokens xn [n, g·g, C], through the output projection: [n·g·g, C]. */
function windowAttention(backbone: Backbone, i: number, xn: tf.Tensor3D): tf.Tensor2D {
  const a = backbone.config.swin!;
  const w = backbone.blocks[i];
  const s = a.blockStage[i];
  const g = a.stageGrids[s];
  const ws = a.blockWindow[i];
  const shift = a.blockShift[i];
  const heads = a.stageHeads[s];
  const [n, , c] = xn.shape;
  const dh = c / heads;
  // Hugging Face's SwinLayer.maybe_pad: the normalised grid padded with zeros (right, bottom) to
  // whole windows before the shift; the padding takes part in attention (no mask) and is cropped after.
  const gp = paddedGrid(a, i);
  const nw = (gp / ws) ** 2;
  const t = ws * ws;
  const rows = n * nw;
  const grid = tf.reshape(xn, [n, g, g, c]) as tf.Tensor4D;
  const padded = gp === g ? grid : tf.pad(grid, [[0, 0], [0, gp - g], [0, gp - g], [0, 0]]);
  const win = partition(roll2d(padded, -shift), ws);
  const flat = tf.reshape(win, [rows * t, c]) as tf.Tensor2D;
  const split = (y: tf.Tensor2D, perm: number[], shape: [number, number, number]) =>
    tf.reshape(tf.transpose(tf.reshape(y, [rows, t, heads, dh]), perm), shape) as tf.Tensor3D;
  // 1/√dh is folded into wq/bq at load time (swin-backbone.ts).
  const q = split(linear(flat, w.wq, w.bq), [0, 2, 1, 3], [rows * heads, t, dh]);
  const kT = split(linear(flat, w.wk, w.bk), [0, 2, 3, 1], [rows * heads, dh, t]);
  const v = split(linear(flat, w.wv, w.bv), [0, 2, 1, 3], [rows * heads, t, dh]);
  const bias = backbone.swin!.attnBias[i]; // [nw | 1, heads, t, t]
  const logits = tf.add(tf.reshape(tf.matMul(q, kT), [n, nw, heads, t, t]), bias);
  const probs = tf.reshape(tf.softmax(logits), [rows * heads, t, t]) as tf.Tensor3D;
  const out = tf.reshape(tf.transpose(tf.reshape(tf.matMul(probs, v), [rows, heads, t, dh]), [0, 2, 1, 3]), [rows, t, c]) as tf.Tensor3D;
  const back = roll2d(unpartition(out, n, gp, ws), shift);
  const merged = gp === g ? back : tf.slice(back, [0, 0, 0, 0], [n, g, g, c]);
  return linear(tf.reshape(merged, [n * g * g, c]) as tf.Tensor2D, w.wo, w.bo);
}

/** One frozen Swin block (global index i) on x [n, g·g, C]. */
export function swinBlock(backbone: Backbone, i: number, x: tf.Tensor3D): tf.Tensor3D {
  const eps = backbone.config.eps;
  const w = backbone.blocks[i];
  const [n, l, c] = x.shape;
  const x2 = tf.reshape(x, [n * l, c]) as tf.Tensor2D;
  const xn = tf.reshape(layerNorm(x2, w.ln1g, w.ln1b, eps), [n, l, c]) as tf.Tensor3D;
  const x3 = tf.add<tf.Tensor2D>(x2, windowAttention(backbone, i, xn));
  const hidden = gelu(linear(layerNorm(x3, w.ln2g, w.ln2b, eps), w.w1, w.b1));
  return tf.reshape(tf.add(x3, linear(hidden, w.w2, w.b2)), [n, l, c]);
}

/**
 * Patch merging after stage s: [n, g·g, C] → [n, ⌈g/2⌉², 2C] (concat of the 2×2 neighbours as x0, x1, x2, x3 = (0,0), (1,0), (0,1), (1,1), LayerNorm, reduction);
 * an odd grid first gets a zero row and column (right, bottom), as Hugging Face's SwinPatchMerging.maybe_pad.
 */
export function patchMerge(backbone: Backbone, s: number, x: tf.Tensor3D): tf.Tensor3D {
  const g = backbone.config.swin!.stageGrids[s];
  const [n, , c] = x.shape;
  const h = Math.ceil(g / 2);
  const even = g % 2 === 0 ? x : tf.pad(tf.reshape(x, [n, g, g, c]), [[0, 0], [0, 1], [0, 1], [0, 0]]);
  // [n, h, 2 (row offset), h, 2 (col offset), C] → [n, h, h, col offset, row offset, C]: the
  // concatenation order (0,0), (1,0), (0,1), (1,1) reads row offset fastest.
  const cat = tf.reshape(tf.transpose(tf.reshape(even, [n, h, 2, h, 2, c]), [0, 1, 3, 4, 2, 5]), [n * h * h, 4 * c]) as tf.Tensor2D;
  const m = backbone.swin!.merges[s];
  return tf.reshape(linear(layerNorm(cat, m.normG, m.normB, backbone.config.eps), m.w), [n, h * h, 2 * c]);
}

/** Block i's forward including the patch merging that precedes it when i opens a stage. */
export function swinStep(backbone: Backbone, i: number, x: tf.Tensor3D): tf.Tensor3D {
  const a = backbone.config.swin!;
  const input = swinOpensStage(backbone.config, i) ? patchMerge(backbone, a.blockStage[i] - 1, x) : x;
  return swinBlock(backbone, i, input);
}

/** Whether block i is the first of a stage after the first (a patch merging precedes it, the CSN accumulator restarts). */
export function swinOpensStage(cfg: BackboneConfig, i: number): boolean {
  const a = cfg.swin!;
  return i > 0 && a.blockStage[i] !== a.blockStage[i - 1];
}

/** Patch embedding + its LayerNorm (+ absolute position embedding): pixels [n, S, S, 3] → [n, g·g, C]. */
export function swinEmbed(backbone: Backbone, pixels: tf.Tensor4D): tf.Tensor3D {
  const { patchSize: p, numPatches } = backbone.config;
  const a = backbone.config.swin!;
  const n = pixels.shape[0];
  const patches = tf.reshape(tf.add(tf.conv2d(pixels, backbone.patchFilter, p, 'valid'), backbone.patchBias), [n, numPatches, a.embedDim]) as tf.Tensor3D;
  const normed = layerNorm(patches, backbone.swin!.patchNormG, backbone.swin!.patchNormB, backbone.config.eps);
  return backbone.swin!.absPos ? tf.add(normed, backbone.swin!.absPos) : normed;
}

/**
 * The CSN's contribution after block i, for the accumulator h [n·g·g, C] of block i's stage:
 * θ(h), through the stage's depthwise k×k conv on the stage's grid for DTL+ (`taps` [k·k, C]).
 */
export function swinCsnAddition(cfg: BackboneConfig, i: number, h: tf.Tensor2D, n: number, beta: number, taps: tf.Tensor2D | null, k: number): tf.Tensor3D {
  const a = cfg.swin!;
  const s = a.blockStage[i];
  const g = a.stageGrids[s];
  const c = a.stageWidths[s];
  const th = swish(h, beta);
  if (!taps) return tf.reshape(th, [n, g * g, c]);
  return tf.reshape(depthwiseSame(tf.reshape(th, [n, g, g, c]) as tf.Tensor4D, taps, k), [n, g * g, c]);
}
