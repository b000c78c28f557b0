/**
 * Running a ViT at another input size: its patch position embeddings resized to the new grid
 * (the cls token's row kept) the way the checkpoint's own library does it, once at load, so the
 * forward pass sees an ordinary ViT at the new size:
 * - Hugging Face layout: `ViTEmbeddings.interpolate_pos_encoding` — PyTorch bicubic (A = −0.75,
 *   align_corners = False, edge samples clamped) to the explicit new size;
 * - timm layout and Google `.npz` (which the authors' code loads through timm):
 *   `resample_abs_pos_embed` — bicubic with `antialias=True` (PIL's a = −0.5 cubic, widened
 *   when shrinking, normalised).
 * The two differ by up to 0.7 on random unit-variance embeddings; each matches PyTorch's own to
 * 1e-6 (test/model/pos-embed.test.ts, references from scripts/pos-embed-reference.py).
 */
import { createHash } from 'node:crypto';
import { AppError } from '../errors.js';
import type { BackboneConfig } from './backbone-config.js';
import type { CanonicalWeights } from './backbone-layouts.js';

const A = -0.75;
const near = (x: number) => ((A + 2) * x - (A + 3)) * x * x + 1; // |x| ≤ 1
const far = (x: number) => ((A * x - 5 * A) * x + 8 * A) * x - 4 * A; // 1 < |x| < 2

/** Source taps and weights of each output index, as PyTorch's upsample_bicubic2d computes them. */
function taps(inSize: number, outSize: number): Array<{ idx: number[]; w: number[] }> {
  const scale = inSize / outSize;
  return Array.from({ length: outSize }, (_, o) => {
    const real = scale * (o + 0.5) - 0.5; // not clamped at 0 for cubic, as in PyTorch
    const i0 = Math.floor(real);
    const t = real - i0;
    const clamp = (i: number) => Math.min(Math.max(i, 0), inSize - 1);
    return { idx: [i0 - 1, i0, i0 + 1, i0 + 2].map(clamp), w: [far(t + 1), near(t), near(1 - t), far(2 - t)] };
  });
}

/**
 * timm's `antialias=True` taps (PyTorch's _upsample_bicubic2d_aa, PIL's algorithm): a cubic
 * with a = −0.5, stretched by the scale when shrinking, truncated at the edges, normalised.
 */
function antialiasTaps(inSize: number, outSize: number): Array<{ idx: number[]; w: number[] }> {
  const scale = inSize / outSize;
  const support = 2 * Math.max(scale, 1);
  const inv = scale >= 1 ? 1 / scale : 1;
  const cubic = (x: number) => {
    const a = -0.5;
    x = Math.abs(x);
    if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
    return 0;
  };
  return Array.from({ length: outSize }, (_, o) => {
    const center = scale * (o + 0.5);
    const lo = Math.max(Math.trunc(center - support + 0.5), 0);
    const hi = Math.min(Math.trunc(center + support + 0.5), inSize);
    const idx: number[] = [];
    const w: number[] = [];
    for (let j = lo; j < hi; j++) {
      idx.push(j);
      w.push(cubic((j - center + 0.5) * inv));
    }
    const total = w.reduce((s, v) => s + v, 0);
    return { idx, w: w.map((v) => (total === 0 ? 0 : v / total)) };
  });
}

/** How a layout's own library resizes: Hugging Face (plain bicubic) or timm (antialiased bicubic). */
export type PosResizeMode = 'hf' | 'timm';

/** pos [1 + from², d] → [1 + to², d]: the cls row as it is, the patch grid resized bicubically. */
export function resizePosEmbed(pos: Float32Array, d: number, from: number, to: number, mode: PosResizeMode = 'hf'): Float32Array {
  if (pos.length !== (1 + from * from) * d) throw new AppError('internal', `position embeddings of ${pos.length} values are not 1 + ${from}² rows of ${d}`);
  const out = new Float32Array((1 + to * to) * d);
  out.set(pos.subarray(0, d));
  const tp = mode === 'timm' ? antialiasTaps(from, to) : taps(from, to);
  // Rows first (H), then columns (W): separable, like the 4×4 outer product PyTorch applies.
  const mid = new Float64Array(to * from * d);
  for (let y = 0; y < to; y++) {
    const { idx, w } = tp[y];
    for (let x = 0; x < from; x++) {
      for (let c = 0; c < d; c++) {
        let s = 0;
        for (let k = 0; k < idx.length; k++) s += w[k] * pos[(1 + idx[k] * from + x) * d + c];
        mid[(y * from + x) * d + c] = s;
      }
    }
  }
  for (let y = 0; y < to; y++) {
    for (let x = 0; x < to; x++) {
      const { idx, w } = tp[x];
      for (let c = 0; c < d; c++) {
        let s = 0;
        for (let k = 0; k < idx.length; k++) s += w[k] * mid[(y * from + idx[k]) * d + c];
        out[(1 + y * to + x) * d + c] = s;
      }
    }
  }
  return out;
}

/** The config of the same backbone run at `imageSize` (a multiple of its patch size). */
export function configAtSize(cfg: BackboneConfig, imageSize: number): BackboneConfig {
  if (!Number.isInteger(imageSize) || imageSize < cfg.patchSize || imageSize % cfg.patchSize !== 0) {
    throw new AppError('config_invalid', `cannot run the backbone at ${imageSize}px: the size must be a positive multiple of its ${cfg.patchSize}px patches`);
  }
  const gridSize = imageSize / cfg.patchSize;
  return { ...cfg, imageSize, gridSize, numPatches: gridSize * gridSize, tokens: gridSize * gridSize + 1, pretrainedImageSize: cfg.pretrainedImageSize ?? cfg.imageSize };
}

/**
 * The backbone at `imageSize` (its own when undefined or equal): config, resized position
 * embeddings, and an identity that differs from the checkpoint's, since everything computed
 * from it (prefix caches, adapters' backbone checks) differs too.
 */
export function atImageSize(
  loaded: { config: BackboneConfig; weights: CanonicalWeights; identity: string },
  imageSize: number | undefined,
): { config: BackboneConfig; weights: CanonicalWeights; identity: string } {
  const { config, weights, identity } = loaded;
  if (imageSize === undefined || imageSize === config.imageSize) return loaded;
  const sized = configAtSize(config, imageSize);
  return {
    config: sized,
    weights: { ...weights, pos: resizePosEmbed(weights.pos, config.width, config.gridSize, sized.gridSize, config.layout === 'hf' ? 'hf' : 'timm') },
    identity: createHash('sha256').update(`${identity}@${imageSize}px`).digest('hex'),
  };
}
