/**
 * The DTL forward pass, cut where the service needs it:
 *
 *   prefix  — blocks 0..M−1 (M = first addition + 1). No adapter touches them (the addition
 *             after block M−1 belongs to the suffix), so they run once per image for every
 *             tenant, outside any gradient tape, one tidy per block.
 *   suffix  — blocks M..N−1 on the whole batch at once, while each group of rows uses its own
 *             adapter's reads, additions (and DTL+ fusion) and head: one batch, many tenants.
 *
 * The CSN accumulator of a group starts from its adapter's reads of the prefix's block inputs.
 */
import * as tf from '@tensorflow/tfjs';
import { AppError } from '../errors.js';
import type { Adapter, AdapterSpec } from './adapter.js';
import type { Backbone } from './backbone.js';
import { batchedHeads, batchedSuffixPooled, splitByGroup } from './forward-batched.js';
import { csnAddition, csnRead, embed, linear, pool, vitBlock } from './layers.js';

export interface PrefixState {
  /** inputs[i] = x_i, the input of block i, for i < split. [n, tokens, d] each. */
  inputs: tf.Tensor3D[];
  /**
   * Output of block split−1 before any adapter's addition (x_0 when split = 0; the backbone's
   * own output when split = depth). The suffix applies the additions after block split−1 itself.
   */
  x: tf.Tensor3D;
  split: number;
}

export interface SuffixGroup {
  adapter: Adapter;
  /** Rows of the prefix batch this adapter classifies, in output order (may repeat). */
  rows: number[];
}

/** First block whose output an adapter changes, plus one; blocks before it are shared. */
export function splitPoint(spec: Pick<AdapterSpec, 'addAfterBlocks'>, depth: number): number {
  return spec.addAfterBlocks.length === 0 ? depth : Math.min(...spec.addAfterBlocks) + 1;
}

function checkPixels(backbone: Backbone, pixels: tf.Tensor4D): void {
  const s = backbone.config.imageSize;
  const [n, h, w, c] = pixels.shape;
  if (pixels.rank !== 4 || n < 1 || h !== s || w !== s || c !== 3) {
    throw new AppError('bad_request', `pixels must be [n ≥ 1, ${s}, ${s}, 3], got [${pixels.shape.join(', ')}]`);
  }
}

/**
 * Runs the shared prefix: x_0 and blocks 0..split−1. Each block runs in its own tidy, so only the
 * block inputs (which the CSN reads) survive. Returned tensors are kept; free with disposePrefix.
 */
export function runPrefix(backbone: Backbone, pixels: tf.Tensor4D, split: number): PrefixState {
  const depth = backbone.config.depth;
  if (!Number.isInteger(split) || split < 0 || split > depth) {
    throw new AppError('internal', `prefix split ${split} is outside 0..${depth}`);
  }
  checkPixels(backbone, pixels);
  const inputs: tf.Tensor3D[] = [];
  let x = tf.keep(tf.tidy(() => embed(backbone, pixels)));
  try {
    for (let i = 0; i < split; i++) {
      inputs.push(x);
      const input = x;
      x = tf.keep(tf.tidy(() => vitBlock(input, backbone.blocks[i], backbone.config)));
    }
  } catch (err) {
    for (const t of [...inputs, x]) if (!t.isDisposed) t.dispose();
    throw err;
  }
  return { inputs, x, split };
}

export function disposePrefix(state: PrefixState): void {
  for (const t of state.inputs) if (!t.isDisposed) t.dispose();
  if (!state.x.isDisposed) state.x.dispose();
}

function checkRows(rows: number[], n: number): void {
  for (const r of rows) {
    if (!Number.isInteger(r) || r < 0 || r >= n) throw new AppError('internal', `row ${r} is outside the batch of ${n}`);
  }
}

/** Selects (and may repeat) rows of a prefix state: fan-out of one image to several adapters. */
export function gatherPrefix(state: PrefixState, rows: number[]): PrefixState {
  checkRows(rows, state.x.shape[0]);
  return tf.tidy(() => {
    const idx = tf.tensor1d(rows, 'int32');
    const pick = (t: tf.Tensor3D) => tf.keep(tf.gather(t, idx));
    return { inputs: state.inputs.map(pick), x: pick(state.x), split: state.split };
  });
}

/** Concatenates prefix states of equal split along the batch axis (e.g. cached + fresh images). */
export function concatPrefix(states: PrefixState[]): PrefixState {
  if (states.length === 0) throw new AppError('internal', 'concatPrefix needs at least one state');
  const split = states[0].split;
  if (states.some((s) => s.split !== split)) throw new AppError('internal', 'concatPrefix: states have different splits');
  return tf.tidy(() => ({
    inputs: states[0].inputs.map((_, i) => tf.keep(tf.concat(states.map((s) => s.inputs[i]), 0))),
    x: tf.keep(tf.concat(states.map((s) => s.x), 0)),
    split,
  }));
}

/** Validates suffix groups against the backbone and the prefix state (AppError on misuse). */
export function checkSuffixGroups(backbone: Backbone, state: PrefixState, groups: SuffixGroup[]): void {
  const { width, depth } = backbone.config;
  if (groups.length === 0) throw new AppError('internal', 'forwardSuffix needs at least one group');
  if (state.inputs.length !== state.split) throw new AppError('internal', 'prefix state is inconsistent');
  for (const { adapter, rows } of groups) {
    if (adapter.disposed) throw new AppError('internal', 'adapter has been disposed');
    if (adapter.width !== width || adapter.depth !== depth) {
      throw new AppError('adapter_backbone_mismatch', `adapter is for width ${adapter.width} × ${adapter.depth} blocks, backbone is ${width} × ${depth}`);
    }
    const s = splitPoint(adapter.spec, depth);
    if (s < state.split) throw new AppError('internal', `adapter adds after block ${s - 1}, inside the prefix (split ${state.split})`);
    if (rows.length === 0) throw new AppError('internal', 'a suffix group has no rows');
    checkRows(rows, state.x.shape[0]);
  }
}

/**
 * Pooled features (input of each head) per group. The additions after block split−1 (the last
 * prefix block) come first; then blocks state.split..depth−1 run once on the
 * concatenation of every group's rows; each group's reads and additions use its own adapter.
 * Works under a gradient tape (training) as well as outside (serving).
 */
export function suffixFeatures(backbone: Backbone, state: PrefixState, groups: SuffixGroup[]): tf.Tensor2D[] {
  checkSuffixGroups(backbone, state, groups);
  // Several adapters: a fixed number of ops per block however many there are (forward-batched.ts).
  if (groups.length > 1) {
    const pooled = batchedSuffixPooled(backbone, state, groups);
    try {
      return tf.tidy(() => splitByGroup(pooled, groups));
    } finally {
      pooled.dispose();
    }
  }
  const cfg = backbone.config;
  const n = state.x.shape[0];
  const sizes = groups.map((g) => g.rows.length);
  const offsets = sizes.map((_, g) => sizes.slice(0, g).reduce((a, b) => a + b, 0));
  const single = groups.length === 1;
  const isAll = (rows: number[]) => rows.length === n && rows.every((r, i) => r === i);

  // Tensors this call owns (state tensors are borrowed and never disposed here).
  const owned = new Set<tf.Tensor>();
  const own = <T extends tf.Tensor>(t: T): T => {
    owned.add(t);
    return tf.keep(t);
  };
  const release = (t: tf.Tensor | null) => {
    if (t && owned.delete(t)) t.dispose();
  };
  try {
    const readSets = groups.map((g) => g.adapter.spec.loraBeforeBlocks);
    const addSets = groups.map((g) => new Set(g.adapter.spec.addAfterBlocks));
    // Accumulators [rows·tokens, d]; null = still zero.
    const hs: Array<tf.Tensor2D | null> = groups.map((g, gi) => {
      const early = readSets[gi].filter((i) => i < state.split);
      if (early.length === 0) return null;
      return own(tf.tidy(() => {
        const idx = isAll(g.rows) ? null : tf.tensor1d(g.rows, 'int32');
        const terms = early.map((i) => {
          const p = g.adapter.reads.get(i)!;
          return csnRead(idx ? tf.gather(state.inputs[i], idx) : state.inputs[i], p.a, p.b);
        });
        return terms.length === 1 ? terms[0] : tf.addN(terms);
      }));
    });
    const allRows = groups.flatMap((g) => g.rows);
    let x: tf.Tensor3D = isAll(allRows) ? state.x : own(tf.tidy(() => tf.gather(state.x, tf.tensor1d(allRows, 'int32'))));
    const segment = (t: tf.Tensor3D, g: number) =>
      single ? t : (tf.slice(t, [offsets[g], 0, 0], [sizes[g], cfg.tokens, cfg.width]) as tf.Tensor3D);

    /** x_{i+1} = y + fuse(θ(h)) for the groups that add after block i (y = block i's output). */
    const addAfter = (i: number, y: tf.Tensor3D): tf.Tensor3D => {
      const adding = groups.some((_, gi) => addSets[gi].has(i) && hs[gi] !== null);
      if (!adding) return y;
      const parts = groups.map((grp, gi) => {
        const seg = segment(y, gi);
        const h = hs[gi];
        // θ(0) = 0 and the conv of 0 is 0: a group with an empty accumulator adds nothing.
        if (!addSets[gi].has(i) || h === null) return seg;
        const { beta, fusionKernel } = grp.adapter.spec;
        return tf.add<tf.Tensor3D>(seg, csnAddition(h, sizes[gi], cfg, beta, grp.adapter.fusion, fusionKernel));
      });
      return parts.length === 1 ? parts[0] : tf.concat<tf.Tensor3D>(parts, 0);
    };

    // The prefix ran block split−1 but not the addition after it (that one is per adapter).
    if (state.split > 0) {
      const input = x;
      const next = tf.tidy(() => addAfter(state.split - 1, input));
      if (next !== input) {
        x = own(next);
        release(input);
      }
    }
    for (let i = state.split; i < cfg.depth; i++) {
      for (let g = 0; g < groups.length; g++) {
        const p = readSets[g].includes(i) ? groups[g].adapter.reads.get(i)! : null;
        if (!p) continue;
        const prev = hs[g];
        const input = x;
        hs[g] = own(tf.tidy(() => {
          const r = csnRead(segment(input, g), p.a, p.b);
          return prev ? tf.add<tf.Tensor2D>(prev, r) : r;
        }));
        release(prev);
      }
      const input = x;
      x = own(tf.tidy(() => addAfter(i, vitBlock(input, backbone.blocks[i], cfg))));
      release(input);
    }
    const finalX = x;
    const pooled = groups.map((_, g) => tf.keep(tf.tidy(() => pool(backbone, segment(finalX, g)))));
    return pooled;
  } finally {
    for (const t of owned) t.dispose();
  }
}

/** Logits per group ([rows, classes] each, in the group's row order and its adapter's label order). */
export function forwardSuffix(backbone: Backbone, state: PrefixState, groups: SuffixGroup[]): tf.Tensor2D[] {
  if (groups.length > 1) {
    checkSuffixGroups(backbone, state, groups);
    const pooled = batchedSuffixPooled(backbone, state, groups);
    try {
      return batchedHeads(pooled, groups);
    } finally {
      pooled.dispose();
    }
  }
  const features = suffixFeatures(backbone, state, groups);
  try {
    return features.map((f, g) => tf.keep(tf.tidy(() => linear(f, groups[g].adapter.headW, groups[g].adapter.headB))));
  } finally {
    for (const f of features) f.dispose();
  }
}

/** Prefix + suffix for one adapter on a batch of preprocessed images [n, S, S, 3]. */
export function predictLogits(backbone: Backbone, adapter: Adapter, pixels: tf.Tensor4D): tf.Tensor2D {
  const state = runPrefix(backbone, pixels, splitPoint(adapter.spec, backbone.config.depth));
  try {
    return forwardSuffix(backbone, state, [{ adapter, rows: [...Array(pixels.shape[0]).keys()] }])[0];
  } finally {
    disposePrefix(state);
  }
}

/** The frozen backbone's own pooled features (no adapter): the reference an untrained adapter must reproduce. */
export function backboneFeatures(backbone: Backbone, pixels: tf.Tensor4D): tf.Tensor2D {
  const state = runPrefix(backbone, pixels, backbone.config.depth);
  try {
    return tf.keep(tf.tidy(() => pool(backbone, state.x)));
  } finally {
    disposePrefix(state);
  }
}
