/**
 * Where a loaded backbone's frozen weights live. buildBackbone keeps the checkpoint's weights on
 * the host (plain Float32Arrays, often views of the file's bytes) and creates each part's tfjs
 * tensors (patch embedding, each block, final norm) the first time something reads it. Then:
 *
 * - `settleBackboneWeights(b, 'tfjs')`: every part in tfjs, host copy dropped — the resident
 *   state every tfjs forward and training expects (and what loading did before residency existed);
 * - `settleBackboneWeights(b, 'native')`: host copy dropped without the blocks and the patch
 *   embedding ever entering the tfjs (wasm) heap — once onnxruntime holds them, a serving runtime
 *   keeps one copy of the weights instead of two. Only the final norm (pooling, on tfjs) is kept.
 *   A later tfjs read of a dropped part fails with an `internal` error naming the part.
 *
 * The native engine builds its graphs from `preparedWeights`, which reads the host copy while it
 * exists and the tfjs tensors after that. Kept apart from the Backbone interface (a registry keyed
 * by the backbone, like the native sessions in native/attach.ts), so views that lend other weights
 * out as a Backbone (vit-trainable.ts) need no part of it.
 */
import * as tf from '@tensorflow/tfjs';
import { AppError } from '../errors.js';
import type { BackboneConfig } from './backbone-config.js';
import type { CanonicalBlock, CanonicalWeights } from './backbone-layouts.js';

/** One block's weights in the forward's layout: [in, out] linears, 1/√headDim folded into q. */
export type PreparedBlock = Record<keyof CanonicalBlock, { data: Float32Array; shape: number[] }>;
/** The patch embedding in the forward's layout: NHWC conv filter [p, p, 3, d]. */
export type PreparedEmbed = Record<'patchFilter' | 'patchBias' | 'cls' | 'pos', { data: Float32Array; shape: number[] }>;

/** PyTorch Linear [out, in] → [in, out]. */
function transpose2d(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let c = 0; c < cols; c++) out[c * rows + r] = src[base + c];
  }
  return out;
}

/** PyTorch Conv2d [d, 3, p, p] → tfjs conv2d filter [p, p, 3, d]. */
function convFilter(src: Float32Array, d: number, p: number): Float32Array {
  const out = new Float32Array(d * 3 * p * p);
  for (let o = 0; o < d; o++) {
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < p; y++) {
        for (let x = 0; x < p; x++) out[((y * p + x) * 3 + c) * d + o] = src[((o * 3 + c) * p + y) * p + x];
      }
    }
  }
  return out;
}

/**
 * The block in the forward's layout. Each tensor is made when its `data` is read (the block itself
 * is read, once, at the first of them): the native engine asks only for what it must write, so a
 * restart whose weight files exist reads none of it (native/weight-files.ts).
 */
export function prepareBlock(cfg: BackboneConfig, block: CanonicalBlock | (() => CanonicalBlock)): PreparedBlock {
  const { width: d, mlpDim: m } = cfg;
  const scale = 1 / Math.sqrt(d / cfg.heads);
  let held: CanonicalBlock | undefined = typeof block === 'function' ? undefined : block;
  const raw = () => (held ??= (block as () => CanonicalBlock)());
  const scaled = (a: Float32Array) => a.map((v) => v * scale);
  const v = (shape: number[], make: (b: CanonicalBlock) => Float32Array) => ({
    shape,
    get data() {
      return make(raw());
    },
  });
  return {
    ln1g: v([d], (b) => b.ln1g), ln1b: v([d], (b) => b.ln1b),
    wq: v([d, d], (b) => scaled(transpose2d(b.wq, d, d))), bq: v([d], (b) => scaled(b.bq)),
    wk: v([d, d], (b) => transpose2d(b.wk, d, d)), bk: v([d], (b) => b.bk),
    wv: v([d, d], (b) => transpose2d(b.wv, d, d)), bv: v([d], (b) => b.bv),
    wo: v([d, d], (b) => transpose2d(b.wo, d, d)), bo: v([d], (b) => b.bo),
    ln2g: v([d], (b) => b.ln2g), ln2b: v([d], (b) => b.ln2b),
    w1: v([d, m], (b) => transpose2d(b.w1, m, d)), b1: v([m], (b) => b.b1),
    w2: v([m, d], (b) => transpose2d(b.w2, d, m)), b2: v([d], (b) => b.b2),
  };
}

export function prepareEmbed(cfg: BackboneConfig, w: CanonicalWeights): PreparedEmbed {
  const { width: d, patchSize: p, tokens: T } = cfg;
  // Made when read, as prepareBlock's tensors are.
  return {
    patchFilter: { shape: [p, p, 3, d], get data() { return convFilter(w.patchW, d, p); } },
    patchBias: { shape: [d], get data() { return w.patchB; } },
    cls: { shape: [1, 1, d], get data() { return w.cls; } },
    pos: { shape: [1, T, d], get data() { return w.pos; } },
  };
}

/** Float parameters of a ViT of this shape (what the weights cost in float32, ÷ 4). */
export function parameterCount(cfg: BackboneConfig): number {
  const { width: d, mlpDim: m, patchSize: p, tokens: T, depth } = cfg;
  const block = 4 * d * d + 4 * d + 2 * d * m + m + d + 4 * d;
  return depth * block + p * p * 3 * d + d + d + T * d + 2 * d;
}

/** The residency of one backbone (buildBackbone makes it; the registry below finds it). */
export interface Residency {
  /** The host copy, until settled. */
  host: CanonicalWeights | undefined;
  /** The tfjs tensors of `part`, made now from the host copy if they were not yet. */
  tensors(part: string): void;
  /** Every part in tfjs. */
  materialize(): void;
  /** Whether this part's tfjs tensors exist. */
  has(part: string): boolean;
}

const residencies = new WeakMap<object, Residency>();

export function registerResidency(backbone: object, r: Residency): void {
  residencies.set(backbone, r);
}

export const droppedPart = (part: string): AppError =>
  new AppError('internal', `the backbone's ${part} weights are not held in tfjs: this runtime runs the backbone on onnxruntime only`);

/** Drops the host copy; 'tfjs' first makes every part, 'native' only the final norm. Idempotent. */
export function settleBackboneWeights(backbone: object, on: 'tfjs' | 'native'): void {
  const r = residencies.get(backbone);
  if (!r || !r.host) return;
  if (on === 'tfjs') r.materialize();
  else r.tensors('norm');
  r.host = undefined;
}

/** Whether `part` ('embed', 'block<i>', 'norm') is held in tfjs; true for backbones without a residency. */
export function holdsInTfjs(backbone: object, part: string): boolean {
  return residencies.get(backbone)?.has(part) ?? true;
}

/** Tensors' values read when their `data` is (so a weight-file restart touches none, prepareBlock's note). */
function readOnAccess(shapes: Record<string, number[]>, tensor: (key: string) => tf.Tensor): Record<string, { data: Float32Array; shape: number[] }> {
  return Object.fromEntries(
    Object.entries(shapes).map(([k, shape]) => [
      k,
      {
        shape,
        get data() {
          return tensor(k).dataSync() as Float32Array;
        },
      },
    ]),
  );
}

/** The block's weights in the forward's layout, from the host copy or else from its tensors. */
export function preparedBlock(backbone: object & { config: BackboneConfig; blocks: readonly object[] }, i: number): PreparedBlock {
  const r = residencies.get(backbone);
  if (r?.host) {
    const host = r.host;
    return prepareBlock(backbone.config, () => host.blocks[i]);
  }
  const shapes = Object.fromEntries(Object.entries(prepareBlock(backbone.config, () => ({}) as CanonicalBlock)).map(([k, v]) => [k, v.shape]));
  return readOnAccess(shapes, (k) => (backbone.blocks[i] as unknown as Record<string, tf.Tensor>)[k]) as PreparedBlock;
}

/** The patch embedding in the forward's layout, from the host copy or else from its tensors. */
export function preparedEmbed(backbone: object & { config: BackboneConfig; patchFilter: tf.Tensor; patchBias: tf.Tensor; cls: tf.Tensor; pos: tf.Tensor }): PreparedEmbed {
  const r = residencies.get(backbone);
  if (r?.host) return prepareEmbed(backbone.config, r.host);
  const { width: d, patchSize: p, tokens: T } = backbone.config;
  const shapes = { patchFilter: [p, p, 3, d], patchBias: [d], cls: [1, 1, d], pos: [1, T, d] };
  return readOnAccess(shapes, (k) => backbone[k as keyof PreparedEmbed]) as PreparedEmbed;
}
