/**
 * The trainable suffix: what one training step back-propagates through, as stages (suffix.ts's
 * `AdapterSuffix`) plus a head. Two shapes of it, one step (train-step.ts) for both:
 *
 *   single   one adapter over every row of the prefix batch: suffix.ts's stages, unchanged
 *   grouped  K adapters, each over its own group of B rows (equal B; rows may repeat across
 *            groups — K candidates on the same batch read the cache once), through ONE suffix:
 *            every block's attention and MLP run once over the K·B rows, and every per-adapter
 *            term is a batched matMul / broadcast over the K groups:
 *
 *   read     h_k += (x_k · A_k,i) · B_k,i            [K, B·t, d] × [K, d, r] × [K, r, d]
 *            (groups on the same rows read a prefix input once: [B·t, d] × [d, K·r], then per group)
 *   add      x_k += a_k,i · fuse_k(θ_{β_k}(h_k))     (a_k,i = 1 where adapter k adds after i)
 *   fuse     Σ_taps shift(θ) · w_k,tap over a K'×K' grid, K' the largest kernel of a run of
 *            consecutive DTL+ groups; plain DTL groups skip the conv. On grids up to 8×8 (the
 *            bundled backbone's 4×4) as one P×P matrix per group and channel times θ (fuseDense)
 *   head     [K, B, d] × [K, d, c] + b_k
 *
 * Stacks, pads and slices only — their gradients are slices, pads and unstacks, which every
 * backend has (no gather, whose gradient needs UnsortedSegmentSum). The loss is Σ_k mean CE_k, so
 * each adapter's gradient is its own group's, as if it had trained alone (test/model/train-grouped).
 */
import * as tf from '@tensorflow/tfjs';
import { AppError } from '../errors.js';
import type { Adapter } from './adapter.js';
import type { Backbone } from './backbone.js';
import { DENSE_FUSION_MAX_PATCHES, depthwiseDense, linear, pool, vitBlock } from './layers.js';
import { checkRows, type PrefixState } from './prefix.js';
import { adapterSuffix, type AdapterSuffix, type Stage } from './suffix.js';

export interface TrainableSuffix {
  stages: AdapterSuffix;
  /** Logits [rows, classes] from the last stage's x (groups one after the other). */
  logits(x: tf.Tensor3D): tf.Tensor2D;
  headVariables(): tf.Variable[];
  /** Rows per group: the loss is mean CE over all rows × groups = Σ_k mean CE_k. */
  groups: number;
}

export function singleSuffix(backbone: Backbone, adapter: Adapter, state: PrefixState): TrainableSuffix {
  return {
    stages: adapterSuffix(backbone, adapter, state),
    logits: (x) => linear(pool(backbone, x), adapter.headW, adapter.headB),
    headVariables: () => [adapter.headW as tf.Variable, adapter.headB as tf.Variable],
    groups: 1,
  };
}

/** K adapters, group k over `rows[k]` of the prefix batch (all groups equally long). */
export function groupedSuffix(backbone: Backbone, adapters: Adapter[], state: PrefixState, rows: number[][]): TrainableSuffix {
  const cfg = backbone.config;
  const { tokens: t, width: d } = cfg;
  const K = adapters.length;
  const B = rows[0]?.length ?? 0;
  if (K === 0 || rows.length !== K) throw new AppError('internal', 'grouped suffix needs one row list per adapter');
  if (B === 0 || rows.some((r) => r.length !== B)) throw new AppError('internal', 'grouped suffix needs equally many rows (≥ 1) per group');
  const classes = adapters[0].spec.labels.length;
  if (adapters.some((a) => a.spec.labels.length !== classes)) throw new AppError('internal', 'grouped suffix needs one class count');
  for (const r of rows) checkRows(r, state.x.shape[0]);
  const R = K * B;
  const rank = Math.max(...adapters.map((a) => a.spec.rank));
  const reads = adapters.map((a) => new Set(a.spec.loraBeforeBlocks));
  const adds = adapters.map((a) => new Set(a.spec.addAfterBlocks));
  const early = [...Array(state.split).keys()].filter((i) => reads.some((s) => s.has(i)));
  const rowIdx = rows.flat();
  // K candidates of a search train on the same rows: the prefix is then read once, not K times.
  const shared = rows.every((r) => r.every((v, j) => v === rows[0][j]));
  const groupRows = shared ? rows[0] : rowIdx;
  const identity = groupRows.length === state.x.shape[0] && groupRows.every((r, i) => r === i);
  // Created inside each stage's tidy (never outside: tidy would not free them, the caller would have to).
  const pick = (x: tf.Tensor3D) => (identity ? x : (tf.gather(x, tf.tensor1d(groupRows, 'int32')) as tf.Tensor3D));
  const betas = () => tf.tensor3d(Float32Array.from(adapters, (a) => a.spec.beta), [K, 1, 1]);
  const pad2 = (w: tf.Tensor2D, rows0: number, cols: number) =>
    w.shape[0] === rows0 && w.shape[1] === cols ? w : tf.pad(w, [[0, rows0 - w.shape[0]], [0, cols - w.shape[1]]]);
  /**
   * Each group's A [d, r] and its B transposed, [K, d, r]. The second product of a read runs as
   * u · (Bᵀ)ᵀ so that its weight gradient is dreadᵀ · u, whose right operand (the one XNNPACK packs
   * for every group of the batch) is u [B·t, r]; written u · B it was uᵀ · dread, packing dread
   * [B·t, d] once per group — 0.2–0.6 ms a group, the largest kernel of a 14-candidate step.
   */
  const readWeights = (i: number) => ({
    as: adapters.map((a, k) => {
      const p = reads[k].has(i) ? a.reads.get(i) : undefined;
      return p ? pad2(p.a, d, rank) : tf.zeros<tf.Rank.R2>([d, rank]);
    }),
    bts: tf.transpose(
      tf.stack(
        adapters.map((a, k) => {
          const p = reads[k].has(i) ? a.reads.get(i) : undefined;
          return p ? pad2(p.b, rank, d) : tf.zeros([rank, d]);
        }),
      ),
      [0, 2, 1],
    ) as tf.Tensor3D,
  });

  /** Each group's read of block i from its own rows x [R, t, d]: [R·t, d]. */
  const readAt = (i: number, x: tf.Tensor3D): tf.Tensor2D => {
    const { as, bts } = readWeights(i);
    const u = tf.matMul(tf.reshape(x, [K, B * t, d]) as tf.Tensor3D, tf.stack(as) as tf.Tensor3D);
    return tf.reshape(tf.matMul(u, bts, false, true), [R * t, d]);
  };
  /** Every group's read of block i from ONE shared x [B, t, d]: one [B·t, d] × [d, K·r] product, no K copies. */
  const readShared = (i: number, x: tf.Tensor3D): tf.Tensor2D => {
    const { as, bts } = readWeights(i);
    const u = tf.matMul(tf.reshape(x, [B * t, d]) as tf.Tensor2D, tf.concat(as, 1));
    const perGroup = tf.transpose(tf.reshape(u, [B * t, K, rank]), [1, 0, 2]) as tf.Tensor3D;
    return tf.reshape(tf.matMul(perGroup, bts, false, true), [R * t, d]);
  };
  /** Taps [n, K'·K', d] of groups k0..k1−1 (all fused), each adapter's k×k taps centred in the K'×K' grid. */
  const taps = (k0: number, k1: number, kernel: number): tf.Tensor3D => {
    const before = (kernel - 1) >> 1;
    return tf.stack(
      adapters.slice(k0, k1).map((a) => {
        const k = a.spec.fusionKernel;
        const off = before - ((k - 1) >> 1);
        const grid = tf.reshape(a.fusion!, [k, k, d]);
        return tf.reshape(tf.pad(grid, [[off, kernel - k - off], [off, kernel - k - off], [0, 0]]), [kernel * kernel, d]);
      }),
    ) as tf.Tensor3D;
  };
  /** DTL+ fusion of θ [n·B, t, d] for the n fused groups k0..k1−1. */
  const fuse = (th: tf.Tensor3D, k0: number, k1: number): tf.Tensor3D => {
    const gs = cfg.gridSize;
    const n = k1 - k0;
    const rowsN = n * B;
    const kernel = Math.max(...adapters.slice(k0, k1).map((a) => a.spec.fusionKernel));
    if (gs * gs <= DENSE_FUSION_MAX_PATCHES) return fuseDense(th, n, taps(k0, k1, kernel), gs, kernel, B);
    const before = (kernel - 1) >> 1;
    const after = kernel - 1 - before;
    const w = taps(k0, k1, kernel);
    const cls = tf.slice(th, [0, 0, 0], [rowsN, 1, d]);
    const grid = tf.reshape(tf.slice(th, [0, 1, 0], [rowsN, t - 1, d]), [rowsN, gs, gs, d]);
    const padded = tf.pad(grid, [[0, 0], [before, after], [before, after], [0, 0]]);
    const terms: tf.Tensor3D[] = [];
    for (let a = 0; a < kernel; a++) {
      for (let b = 0; b < kernel; b++) {
        const shifted = tf.reshape(tf.slice(padded, [0, a, b, 0], [rowsN, gs, gs, d]), [n, B * (t - 1), d]);
        terms.push(tf.mul(shifted, tf.slice(w, [0, a * kernel + b, 0], [n, 1, d])));
      }
    }
    const conv = tf.reshape(terms.length === 1 ? terms[0] : tf.addN(terms), [rowsN, t - 1, d]);
    return tf.concat([cls, conv], 1) as tf.Tensor3D;
  };
  // Runs of consecutive groups that fuse or not: only DTL+ groups pay for the conv (plain DTL passes θ).
  const fusedRuns: { k0: number; k1: number; fused: boolean }[] = [];
  adapters.forEach((a, k) => {
    const fused = a.fusion !== null && a.spec.fusionKernel > 0;
    const last = fusedRuns.at(-1);
    if (last && last.fused === fused) last.k1 = k + 1;
    else fusedRuns.push({ k0: k, k1: k + 1, fused });
  });
  const fuseAll = (th: tf.Tensor3D): tf.Tensor3D => {
    if (fusedRuns.length === 1) return fusedRuns[0].fused ? fuse(th, 0, K) : th;
    const parts = fusedRuns.map(({ k0, k1, fused }) => {
      const part = tf.slice(th, [k0 * B, 0, 0], [(k1 - k0) * B, t, d]);
      return fused ? fuse(part, k0, k1) : part;
    });
    return tf.concat(parts, 0) as tf.Tensor3D;
  };
  /** y + each adding group's fuse(θ(h)); y is [R, t, d], or the shared [B, t, d] all groups start from. */
  const addition = (i: number, y: tf.Tensor3D, h: tf.Tensor2D | null): tf.Tensor3D => {
    const which = adds.map((s) => s.has(i));
    // K copies by concat, not tf.tile: wasm's Tile took ≈ 24 ms for the bundled backbone's 256 rows.
    const tiled = () => (y.shape[0] === R ? y : (tf.concat(Array.from({ length: K }, () => y), 0) as tf.Tensor3D));
    if (h === null || !which.some(Boolean)) return tiled();
    const hk = tf.reshape(h, [K, B * t, d]);
    let th = tf.mul(hk, tf.sigmoid(tf.mul(hk, betas())));
    if (!which.every(Boolean)) th = tf.mul(th, tf.tensor3d(Float32Array.from(which, Number), [K, 1, 1]));
    const fused = fuseAll(tf.reshape(th, [R, t, d]) as tf.Tensor3D);
    if (y.shape[0] === R) return tf.add(y, fused);
    return tf.reshape(tf.add(tf.reshape(fused, [K, B, t, d]), y), [R, t, d]) as tf.Tensor3D;
  };
  const readVars = (i: number) =>
    adapters.flatMap((a, k) => (reads[k].has(i) ? ([a.reads.get(i)!.a, a.reads.get(i)!.b] as tf.Variable[]) : []));
  const fusionVars = (i: number) => adapters.flatMap((a, k) => (adds[k].has(i) && a.fusion ? [a.fusion as tf.Variable] : []));

  const stages: AdapterSuffix = {
    pre: (): Stage => {
      const terms = early.map((i) => (shared ? readShared(i, pick(state.inputs[i])) : readAt(i, pick(state.inputs[i]))));
      const h = terms.length === 0 ? null : terms.length === 1 ? terms[0] : tf.addN(terms);
      // Shared rows: x is one [B, t, d] copy, broadcast into the K groups by the addition (or tiled).
      const x = pick(state.x);
      return { x: addition(state.split - 1, x, state.split > 0 ? h : null), h };
    },
    block: (i, p) => stages.after!(i, p, vitBlock(p.x, backbone.blocks[i], cfg)),
    after: (i, p, y) => {
      const any = reads.some((s) => s.has(i));
      const h = any ? (p.h ? tf.add<tf.Tensor2D>(p.h, readAt(i, p.x)) : readAt(i, p.x)) : p.h;
      return { x: addition(i, y, h), h };
    },
    blockVariables: (i) => [...readVars(i), ...fusionVars(i)],
    preVariables: () => [...early.flatMap(readVars), ...(state.split > 0 ? fusionVars(state.split - 1) : [])],
  };
  return {
    stages,
    logits: (x) => {
      const pooled = tf.reshape(pool(backbone, x), [K, B, d]) as tf.Tensor3D;
      const w = tf.stack(adapters.map((a) => a.headW)) as tf.Tensor3D;
      const b = tf.reshape(tf.stack(adapters.map((a) => a.headB)), [K, 1, classes]);
      return tf.reshape(tf.add(tf.matMul(pooled, w), b), [R, classes]) as tf.Tensor2D;
    },
    headVariables: () => adapters.flatMap((a) => [a.headW as tf.Variable, a.headB as tf.Variable]),
    groups: K,
  };
}

/**
 * The grouped DTL+ conv on a small grid: layers.ts's depthwiseDense over the n fused groups (one
 * P×P matrix per group and channel) — on wasm a handful of XNNPACK products and transposes where
 * the slices were K'² slices, products and broadcast-weight gradients (each a Sum over a non-inner
 * axis: a transposed copy first), about a third of a grouped 8-candidate step on the bundled backbone.
 */
function fuseDense(th: tf.Tensor3D, n: number, w: tf.Tensor3D, gs: number, kernel: number, B: number): tf.Tensor3D {
  const [rowsN, t, d] = th.shape;
  const P = gs * gs;
  const cls = tf.slice(th, [0, 0, 0], [rowsN, 1, d]);
  const grid = tf.reshape(tf.slice(th, [0, 1, 0], [rowsN, t - 1, d]), [n, B, P, d]) as tf.Tensor4D;
  const conv = depthwiseDense(grid, w, gs, gs, kernel);
  return tf.concat([cls, tf.reshape(conv, [rowsN, P, d]) as tf.Tensor3D], 1) as tf.Tensor3D;
}
