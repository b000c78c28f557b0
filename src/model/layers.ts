/**
 * The ViT and CSN building blocks, written for the wasm backend: every linear layer is one 2-D
 * matMul ([rows, in] × [in, out]) with no transpose flags, attention keeps q/k/v separate, and the
 * DTL+ depthwise conv is spelled as matMuls (small grids) or pad + shifted slices because wasm has
 * no depthwise-conv backward kernel. None of these tidy: callers decide the scope.
 */
import * as tf from '@tensorflow/tfjs';
import type { Backbone, BlockWeights } from './backbone.js';
import type { BackboneConfig } from './backbone-config.js';
import { geluOp } from './kernels/gelu.js';

/**
 * x·w + b. The bias goes into the matMul kernel (XNNPACK adds it in the same pass): one op, not
 * two. Called as the bare _FusedMatMul kernel rather than tf.fused.matMul: the latter's custom
 * gradient computes the weight gradient eagerly even for a frozen weight (a full extra matMul per
 * layer in every backward pass); the kernel's gradient (kernels/matmul-gradients.ts) is lazy per input.
 */
export function linear(x: tf.Tensor2D, w: tf.Tensor2D, b?: tf.Tensor1D): tf.Tensor2D {
  if (!b) return tf.matMul(x, w);
  const [rows, inDim] = x.shape;
  const outDim = w.shape[1];
  const y = tf.engine().runKernel(
    '_FusedMatMul',
    { a: tf.reshape(x, [1, rows, inDim]), b: tf.reshape(w, [1, inDim, outDim]), bias: b },
    { transposeA: false, transposeB: false, activation: 'linear' },
  ) as tf.Tensor3D;
  return tf.reshape(y, [rows, outDim]);
}

/**
 * LayerNorm over the last axis (biased variance, as PyTorch). The same arithmetic as tf.moments
 * followed by the normalisation, without moments' float32→float32 Cast (a full copy on wasm) and
 * with x − mean computed once instead of twice.
 */
export function layerNorm<T extends tf.Tensor>(x: T, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps: number): T {
  const centred = tf.sub(x, tf.mean(x, -1, true));
  const variance = tf.mean(tf.square(centred), -1, true);
  return tf.add(tf.mul(tf.mul(centred, tf.rsqrt(tf.add(variance, eps))), gamma), beta) as T;
}

/** Exact GELU, 0.5·x·(1 + erf(x/√2)) — both layouts' checkpoints were trained with it (one kernel on wasm). */
export function gelu<T extends tf.Tensor>(x: T): T {
  return geluOp(x);
}

/** θ(h) = h·sigmoid(β·h). */
export function swish<T extends tf.Tensor>(h: T, beta: number): T {
  return tf.mul(h, tf.sigmoid(tf.mul(h, beta))) as T;
}

/**
 * Multi-head self-attention on already-normalised tokens xn ([n·t, d]); returns the heads'
 * concatenated output before the output projection. QKᵀ and PV are batched matMuls over the
 * n·heads pairs, which kernels/wasm-matmul.ts runs as one XNNPACK product per pair.
 */
export function attention(xn: tf.Tensor2D, w: BlockWeights, n: number, t: number, heads: number): tf.Tensor2D {
  const d = xn.shape[1];
  const dh = d / heads;
  const split = (y: tf.Tensor2D, perm: number[], shape: [number, number, number]) =>
    tf.reshape(tf.transpose(tf.reshape(y, [n, t, heads, dh]), perm), shape) as tf.Tensor3D;
  // 1/√dh is folded into wq/bq at load time (see backbone.ts).
  const q = split(linear(xn, w.wq, w.bq), [0, 2, 1, 3], [n * heads, t, dh]);
  const kT = split(linear(xn, w.wk, w.bk), [0, 2, 3, 1], [n * heads, dh, t]);
  const v = split(linear(xn, w.wv, w.bv), [0, 2, 1, 3], [n * heads, t, dh]);
  const probs = tf.softmax(tf.matMul(q, kT));
  const out = tf.matMul(probs, v); // [n·heads, t, dh]
  return tf.reshape(tf.transpose(tf.reshape(out, [n, heads, t, dh]), [0, 2, 1, 3]), [n * t, d]);
}

/** One frozen pre-norm ViT block on x [n, t, d]. */
export function vitBlock(x: tf.Tensor3D, w: BlockWeights, cfg: BackboneConfig): tf.Tensor3D {
  const [n, t, d] = x.shape;
  const x2 = tf.reshape(x, [n * t, d]) as tf.Tensor2D;
  const a = attention(layerNorm(x2, w.ln1g, w.ln1b, cfg.eps), w, n, t, cfg.heads);
  const x3 = tf.add<tf.Tensor2D>(x2, linear(a, w.wo, w.bo));
  const hidden = gelu(linear(layerNorm(x3, w.ln2g, w.ln2b, cfg.eps), w.w1, w.b1));
  return tf.reshape(tf.add(x3, linear(hidden, w.w2, w.b2)), [n, t, d]);
}

/** Patch embedding + cls token + position embedding: pixels [n, S, S, 3] (NHWC) → x_0 [n, tokens, d]. */
export function embed(backbone: Backbone, pixels: tf.Tensor4D): tf.Tensor3D {
  const { patchSize: p, numPatches, width: d } = backbone.config;
  const n = pixels.shape[0];
  const patches = tf.reshape(tf.add(tf.conv2d(pixels, backbone.patchFilter, p, 'valid'), backbone.patchBias), [n, numPatches, d]);
  const cls = tf.broadcastTo(backbone.cls, [n, 1, d]);
  return tf.add(tf.concat([cls, patches], 1), backbone.pos) as tf.Tensor3D;
}

/**
 * pooled = LayerNorm_final(mean over patch tokens of x_N); the cls token is excluded. A Swin
 * (no cls token) norms every token first and then averages, as its code does.
 */
export function pool(backbone: Backbone, x: tf.Tensor3D): tf.Tensor2D {
  if (backbone.swin) return tf.mean(layerNorm(x, backbone.normG, backbone.normB, backbone.config.eps), 1) as tf.Tensor2D;
  const [n, t, d] = x.shape;
  const mean = tf.mean(tf.slice(x, [0, 1, 0], [n, t - 1, d]), 1) as tf.Tensor2D;
  return layerNorm(mean, backbone.normG, backbone.normB, backbone.config.eps);
}

/**
 * Patch grids up to this many patches run the DTL+ conv as matrices (depthwiseDense: the bundled
 * backbone's 4×4, a Swin's 7×7 last stage); bigger ones as shifted slices. A P×P matrix per
 * channel costs P² multiply-adds a patch where the slices cost k²: on a 14×14 ViT-B grid that is
 * 196/9 times the arithmetic, while the slices' op count (k² slices, products and their
 * broadcast-weight gradients, each a Sum over a non-inner axis) is what dominates small grids.
 */
export const DENSE_FUSION_MAX_PATCHES = 64;

/**
 * Sᵀ [k², P²]: row tap (a, b) has a 1 at (q, p) where q is patch p moved by (a − before, b − before)
 * inside the gh × gw grid — the transpose of each tap's shift, so that x [N, P] · Σ w·Sᵀ_tap is the conv.
 */
const shiftMatrices = new Map<string, Float32Array>();
function shiftMatrixT(gh: number, gw: number, kernel: number): Float32Array {
  const key = `${gh}:${gw}:${kernel}`;
  let s = shiftMatrices.get(key);
  if (s) return s;
  const P = gh * gw;
  const before = (kernel - 1) >> 1;
  s = new Float32Array(kernel * kernel * P * P);
  for (let a = 0; a < kernel; a++) {
    for (let b = 0; b < kernel; b++) {
      for (let i = 0; i < gh; i++) {
        for (let j = 0; j < gw; j++) {
          const qi = i + a - before;
          const qj = j + b - before;
          if (qi >= 0 && qi < gh && qj >= 0 && qj < gw) s[(a * kernel + b) * P * P + (qi * gw + qj) * P + i * gw + j] = 1;
        }
      }
    }
  }
  shiftMatrices.set(key, s);
  return s;
}

/**
 * The depthwise 'same' conv of G independent groups as two matMuls: grid [G, N, P, d] (P = gh·gw
 * patches, row-major), taps [G, k², d] → [G, N, P, d]. Every (group, channel) gets its P×P matrix
 * Mᵀ = Σ_taps w_tap · Sᵀ_tap (one [G·d, k²] × [k², P²] product), then conv = x · Mᵀ with x laid
 * out [G·d, N, P] by one transpose. Gradients: matMuls and transposes, which wasm has. x · Mᵀ
 * rather than M · x [G·d, P, N]: XNNPACK packs the right operand of each of the G·d products, the
 * small P×P one here; forward and both gradients measured 1.0–1.2× faster that way (4×4 grid,
 * d 64, 32 rows, G 1/4/7, at load 2.5–3.5: within the noise at G 1).
 */
export function depthwiseDense(grid: tf.Tensor4D, taps: tf.Tensor3D, gh: number, gw: number, k: number): tf.Tensor4D {
  const [G, N, P, d] = grid.shape;
  const s = tf.tensor2d(shiftMatrixT(gh, gw, k), [k * k, P * P]);
  const mT = tf.reshape(tf.matMul(tf.reshape(tf.transpose(taps, [0, 2, 1]), [G * d, k * k]), s), [G * d, P, P]) as tf.Tensor3D;
  const x = tf.reshape(tf.transpose(grid, [0, 3, 1, 2]), [G * d, N, P]) as tf.Tensor3D;
  return tf.transpose(tf.reshape(tf.matMul(x, mT), [G, d, N, P]), [0, 2, 3, 1]);
}

/**
 * DTL+ fusion: one depthwise k×k conv (no bias) over the patch tokens on their grid, 'same'
 * padding ((k−1)//2 before, the rest after, as PyTorch's padding='same'); the cls row bypasses.
 * wasm has no depthwise-conv backward kernel: small grids run as matrices (depthwiseDense),
 * larger ones as pad + k² shifted slices × per-channel weights + addN. `taps` is [k·k, d]: row
 * i·k + j is the weight at kernel position (i, j).
 */
export function depthwiseSame(x: tf.Tensor4D, taps: tf.Tensor2D, k: number): tf.Tensor4D {
  const [n, gh, gw, d] = x.shape;
  if (gh * gw <= DENSE_FUSION_MAX_PATCHES) {
    const conv = depthwiseDense(tf.reshape(x, [1, n, gh * gw, d]), tf.reshape(taps, [1, k * k, d]), gh, gw, k);
    return tf.reshape(conv, [n, gh, gw, d]);
  }
  const before = (k - 1) >> 1;
  const after = k - 1 - before;
  const padded = tf.pad(x, [[0, 0], [before, after], [before, after], [0, 0]]);
  const weights = tf.unstack(taps) as tf.Tensor1D[];
  const terms: tf.Tensor4D[] = [];
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < k; j++) terms.push(tf.mul(tf.slice(padded, [0, i, j, 0], [n, gh, gw, d]), weights[i * k + j]));
  }
  return terms.length === 1 ? terms[0] : tf.addN(terms);
}

/** The CSN's contribution to x_{i+1}: fuse(θ(h)) for h [n·t, d]; returns [n, t, d]. */
export function csnAddition(h: tf.Tensor2D, n: number, cfg: BackboneConfig, beta: number, fusion: tf.Tensor2D | null, k: number): tf.Tensor3D {
  const d = cfg.width;
  const t = cfg.tokens;
  const th = tf.reshape(swish(h, beta), [n, t, d]) as tf.Tensor3D;
  if (!fusion) return th;
  const cls = tf.slice(th, [0, 0, 0], [n, 1, d]);
  const grid = tf.reshape(tf.slice(th, [0, 1, 0], [n, t - 1, d]), [n, cfg.gridSize, cfg.gridSize, d]) as tf.Tensor4D;
  const conv = tf.reshape(depthwiseSame(grid, fusion, k), [n, t - 1, d]);
  return tf.concat<tf.Tensor3D>([cls as tf.Tensor3D, conv as tf.Tensor3D], 1);
}

/** One CSN read: (x_i · Aᵀ) · Bᵀ with A, B stored pre-transposed as [d, r] and [r, d]. */
export function csnRead(x: tf.Tensor3D, a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  const [n, t, d] = x.shape;
  return tf.matMul(tf.matMul(tf.reshape(x, [n * t, d]) as tf.Tensor2D, a), b);
}
