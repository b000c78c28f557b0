/**
 * The suffix for several adapters in one batch, with a fixed number of ops per block whatever the
 * number of adapters. Running suffix.ts's single-adapter stages once per adapter (slice, reads,
 * additions, concat) costs about 10 small tfjs ops per adapter per block — ≈ 5 ms per extra
 * adapter for a 12-block ViT on wasm, which a mixed batch of 32 tenants would pay 31 times. Here
 * all rows go through each stage together, each row with its own adapter's weights:
 *
 *   read     h += (x_r · A_r,i) · B_r,i for every row r at once: two batched matMuls over rows,
 *            with each row's A and B gathered from one per-batch stack of every adapter's reads
 *            (zeros where an adapter does not read block i)
 *   add      x += a_i(r) · fuse_r(θ_{β_r}(h))             (a_i(r) = 1 where r's adapter adds after i)
 *   fuse     Σ_taps shift(θ) · w_r,tap over a K×K grid, K the largest kernel in the batch: each
 *            adapter's k×k taps sit inside it, plain DTL rows get the identity tap
 *
 * A rank below the batch's largest is padded with zero columns/rows; an adapter that does not read a
 * block reads it with zero weights. Masking and padding add exact zeros, so each row's numbers are
 * its own adapter's — the summation order of the fusion sum differs from the single-adapter
 * stages only within float32 rounding (the serving tests hold batched and
 * one-at-a-time to 1e-5).
 */
import * as tf from '@tensorflow/tfjs';
import type { Backbone } from './backbone.js';
import { linear, pool, vitBlock } from './layers.js';
import type { PrefixState } from './prefix.js';
import type { SuffixGroup } from './suffix.js';

/**
 * The batched suffix between blocks: what happens before and after each frozen block, whoever
 * runs the block itself (vitBlock here; onnxruntime in native/forward-native.ts). Tensors it
 * returns are owned by it until released or disposed with it.
 */
export interface BatchedSuffix {
  /** The rows' x after the additions after block split−1 (the accumulator holds the prefix reads). */
  start(): tf.Tensor3D;
  /** Block i's reads of its input x (before the block runs). */
  read(i: number, x: tf.Tensor3D): void;
  /** x_{i+1} from block i's output y (kept; this object takes it over): y itself when no row adds after i. */
  add(i: number, y: tf.Tensor3D): tf.Tensor3D;
  /** Frees a tensor this object returned, once the next one is computed. */
  release(x: tf.Tensor3D): void;
  /** True when nothing happens between block i and block i + 1: no row adds after i, none reads i + 1. */
  quietAfter(i: number): boolean;
  dispose(): void;
}

/**
 * Pooled features of every row, [Σ rows, d], groups one after the other in their rows' order
 * (forward.ts validates the groups before calling this). The caller owns the result.
 */
export function batchedSuffixPooled(backbone: Backbone, state: PrefixState, groups: SuffixGroup[]): tf.Tensor2D {
  const suffix = batchedSuffix(backbone, state, groups);
  try {
    let x = suffix.start();
    for (let i = state.split; i < backbone.config.depth; i++) {
      const input = x;
      suffix.read(i, input);
      const y = tf.keep(tf.tidy(() => vitBlock(input, backbone.blocks[i], backbone.config)));
      x = suffix.add(i, y);
      suffix.release(input);
    }
    const finalX = x;
    return tf.tidy(() => pool(backbone, finalX));
  } finally {
    suffix.dispose();
  }
}

/** The batched suffix's stages for `groups` over the prefix state (validated by the caller). */
export function batchedSuffix(backbone: Backbone, state: PrefixState, groups: SuffixGroup[]): BatchedSuffix {
  const cfg = backbone.config;
  const { tokens: t, width: d, depth } = cfg;
  const G = groups.length;
  const n = state.x.shape[0];
  const allRows = groups.flatMap((g) => g.rows);
  const R = allRows.length;
  const groupOfRow = groups.flatMap((g, gi) => g.rows.map(() => gi));
  const k = Math.max(...groups.map((g) => g.adapter.spec.rank));
  const reads = groups.map((g) => new Set(g.adapter.spec.loraBeforeBlocks));
  const adds = groups.map((g) => new Set(g.adapter.spec.addAfterBlocks));
  const K = Math.max(0, ...groups.map((g) => (g.adapter.fusion ? g.adapter.spec.fusionKernel : 0)));
  const identityRows = allRows.length === n && allRows.every((r, i) => r === i);

  const anyReads = (i: number) => reads.some((s) => s.has(i));
  /**
   * Every adapter's read weights of every block in two tensors, built once per batch (a few ops
   * per adapter): A as [G·depth, d, k] and B as [G·depth, k, d] (entry g·depth + i; zeros where
   * adapter g does not read block i; ranks below k padded with zeros).
   */
  const stackReads = (): { a: tf.Tensor3D; b: tf.Tensor3D } =>
    tf.tidy(() => {
      const zeros = new Map<number, [tf.Tensor2D, tf.Tensor2D]>();
      const zerosOf = (r: number) => {
        let z = zeros.get(r);
        if (!z) zeros.set(r, (z = [tf.zeros([d, r]), tf.zeros([r, d])]));
        return z;
      };
      const blocksOf = (g: SuffixGroup, gi: number) => {
        const [za, zb] = zerosOf(g.adapter.spec.rank);
        const as: tf.Tensor2D[] = [];
        const bs: tf.Tensor2D[] = [];
        for (let i = 0; i < depth; i++) {
          const p = reads[gi].has(i) ? g.adapter.reads.get(i) : undefined;
          as.push(p ? p.a : za);
          bs.push(p ? p.b : zb);
        }
        return { as, bs };
      };
      if (groups.every((g) => g.adapter.spec.rank === k)) {
        // One rank (the usual case): one concat for every A and one for every B.
        const all = groups.map(blocksOf);
        return {
          a: tf.reshape(tf.concat(all.flatMap((x) => x.as), 0), [G * depth, d, k]),
          b: tf.reshape(tf.concat(all.flatMap((x) => x.bs), 0), [G * depth, k, d]),
        };
      }
      // Mixed ranks: per adapter, its blocks one after the other, padded to rank k once.
      const perGroup = groups.map((g, gi) => {
        const r = g.adapter.spec.rank;
        const { as, bs } = blocksOf(g, gi);
        let a = tf.concat(as, 0) as tf.Tensor2D; // [depth·d, r]
        let b = tf.reshape(tf.concat(bs, 0), [depth, r, d]) as tf.Tensor3D;
        if (r < k) {
          a = tf.pad(a, [[0, 0], [0, k - r]]);
          b = tf.pad(b, [[0, 0], [0, k - r], [0, 0]]);
        }
        return { a, b };
      });
      return {
        a: tf.reshape(tf.concat(perGroup.map((p) => p.a), 0), [G * depth, d, k]),
        b: tf.reshape(tf.concat(perGroup.map((p) => p.b), 0), [G * depth, k, d]),
      };
    });
  /**
   * Each row's own read of block i, (x_r · A_r) · B_r, as two batched matMuls over the rows
   * ([R, t, d]×[R, d, k], [R, t, k]×[R, k, d]; kernels/wasm-matmul.ts runs them as per-row XNNPACK
   * products): [R·t, d]. (Every row against every adapter in two 2-D matMuls with a mask keeping
   * each row's own columns — G times the FLOPs — measured slower at 17 tokens × 16 adapters and
   * 1.2× slower overall at 65 tokens × 32 adapters.)
   */
  const readAll = (x: tf.Tensor3D, i: number, w: { a: tf.Tensor3D; b: tf.Tensor3D }): tf.Tensor2D => {
    const idx = tf.tensor1d(Int32Array.from(groupOfRow, (g) => g * depth + i), 'int32');
    const u = tf.matMul(x, tf.gather(w.a, idx) as tf.Tensor3D);
    return tf.reshape(tf.matMul(u, tf.gather(w.b, idx) as tf.Tensor3D), [R * t, d]);
  };

  /** Per-row scalars [R, 1, 1]. */
  const perRow = (f: (g: number) => number) => tf.tensor3d(Float32Array.from(groupOfRow, f), [R, 1, 1]);

  /** Per-row fusion taps [R, K·K, d]: each adapter's k×k taps placed in the K×K grid; identity for plain DTL. */
  const rowTaps = (): tf.Tensor3D => {
    const before = (K - 1) >> 1;
    const perGroup = groups.map((g) => {
      const kk = g.adapter.fusion ? g.adapter.spec.fusionKernel : 0;
      if (kk === 0) {
        const id = new Float32Array(K * K * d);
        id.fill(1, (before * K + before) * d, (before * K + before + 1) * d);
        return tf.tensor2d(id, [K * K, d]);
      }
      const off = before - ((kk - 1) >> 1);
      const grid = tf.reshape(g.adapter.fusion!, [kk, kk, d]);
      return tf.reshape(tf.pad(grid, [[off, K - kk - off], [off, K - kk - off], [0, 0]]), [K * K, d]);
    });
    return tf.gather(tf.stack(perGroup), tf.tensor1d(groupOfRow, 'int32')) as tf.Tensor3D;
  };
  /** fuse(θ) for every row: cls token passes, patch tokens get their row's depthwise K×K conv ('same'). */
  const fuse = (th: tf.Tensor3D, taps: tf.Tensor3D): tf.Tensor3D => {
    const gs = cfg.gridSize;
    const before = (K - 1) >> 1;
    const after = K - 1 - before;
    const cls = tf.slice(th, [0, 0, 0], [R, 1, d]);
    const grid = tf.reshape(tf.slice(th, [0, 1, 0], [R, t - 1, d]), [R, gs, gs, d]);
    const padded = tf.pad(grid, [[0, 0], [before, after], [before, after], [0, 0]]);
    const terms: tf.Tensor4D[] = [];
    for (let a = 0; a < K; a++) {
      for (let b = 0; b < K; b++) {
        const w = tf.reshape(tf.slice(taps, [0, a * K + b, 0], [R, 1, d]), [R, 1, 1, d]);
        terms.push(tf.mul(tf.slice(padded, [0, a, b, 0], [R, gs, gs, d]), w));
      }
    }
    const conv = tf.reshape(terms.length === 1 ? terms[0] : tf.addN(terms), [R, t - 1, d]);
    return tf.concat([cls, conv], 1) as tf.Tensor3D;
  };

  const owned = new Set<tf.Tensor>();
  const own = <T extends tf.Tensor>(x: T): T => {
    if (!owned.has(x)) owned.add(tf.keep(x));
    return x;
  };
  const release = (x: tf.Tensor | null) => {
    if (x && owned.delete(x)) x.dispose();
  };
  const disposeAll = () => {
    for (const x of owned) x.dispose();
    owned.clear();
  };
  try {
    const rowIdx = identityRows ? null : own(tf.tensor1d(allRows, 'int32'));
    const pick = (x: tf.Tensor3D) => (rowIdx ? (tf.gather(x, rowIdx) as tf.Tensor3D) : x);
    const betas = own(perRow((g) => groups[g].adapter.spec.beta));
    const stackedReads = stackReads();
    own(stackedReads.a);
    own(stackedReads.b);
    const taps = K > 0 ? own(tf.tidy(rowTaps)) : null;
    const addMasks = new Map<number, tf.Tensor3D>();
    const addMask = (i: number) => {
      let m = addMasks.get(i);
      if (!m) addMasks.set(i, (m = own(perRow((g) => (adds[g].has(i) ? 1 : 0)))));
      return m;
    };
    // Accumulator [R·t, d]; null = still zero.
    let h: tf.Tensor2D | null = null;

    /** x_{i+1} = y + a_i ⊙ fuse(θ(h)) (y = block i's output); rows whose adapter does not add keep y. */
    const addAfter = (i: number, y: tf.Tensor3D, acc: tf.Tensor2D | null): tf.Tensor3D => {
      if (acc === null || !adds.some((s) => s.has(i))) return y;
      const h3 = tf.reshape(acc, [R, t, d]) as tf.Tensor3D;
      // θ(h) = h·sigmoid(β·h) with each row's own β.
      let th = tf.mul(h3, tf.sigmoid(tf.mul(h3, betas))) as tf.Tensor3D;
      if (taps) th = fuse(th, taps);
      const all = groupOfRow.every((g) => adds[g].has(i));
      return tf.add(y, all ? th : tf.mul(th, addMask(i)));
    };

    return {
      start: () => {
        // The reads of the prefix's block inputs.
        const early = [...Array(state.split).keys()].filter(anyReads);
        if (early.length > 0) {
          h = own(
            tf.tidy(() => {
              const terms = early.map((i) => readAll(pick(state.inputs[i]), i, stackedReads));
              return terms.length === 1 ? terms[0] : tf.addN(terms);
            }),
          );
        }
        let x: tf.Tensor3D = rowIdx ? own(tf.tidy(() => pick(state.x))) : state.x;
        if (state.split > 0) {
          const input = x;
          const acc = h;
          const next = tf.tidy(() => addAfter(state.split - 1, input, acc));
          if (next !== input) {
            x = own(next);
            release(input);
          }
        }
        return x;
      },
      read: (i, x) => {
        if (!anyReads(i)) return;
        const prev = h;
        h = own(
          tf.tidy(() => {
            const r = readAll(x, i, stackedReads);
            return prev ? tf.add<tf.Tensor2D>(prev, r) : r;
          }),
        );
        release(prev);
      },
      add: (i, y) => {
        const acc = h;
        const next = tf.tidy(() => addAfter(i, y, acc));
        if (next !== y) y.dispose();
        return own(next);
      },
      release,
      quietAfter: (i) => !adds.some((s) => s.has(i)) && !anyReads(i + 1),
      dispose: disposeAll,
    };
  } catch (err) {
    disposeAll();
    throw err;
  }
}

/** Cuts [Σ rows, c] into one [rows_g, c_g] block per group: rows in group order, columns [from_g, from_g + c_g). */
export function splitByGroup(all: tf.Tensor2D, groups: SuffixGroup[], columns?: number[]): tf.Tensor2D[] {
  let row = 0;
  let col = 0;
  return groups.map((g, gi) => {
    const width = columns ? columns[gi] : all.shape[1];
    const part = tf.slice(all, [row, columns ? col : 0], [g.rows.length, width]);
    row += g.rows.length;
    if (columns) col += width;
    return part;
  });
}

/**
 * Every group's head at once: one matMul of all rows against every head side by side
 * ([Σ rows, d] × [d, Σ classes]), then each group's own rows and columns. One op per group
 * instead of four; the extra products (rows × other heads) are a few kFLOP.
 */
export function batchedHeads(pooled: tf.Tensor2D, groups: SuffixGroup[]): tf.Tensor2D[] {
  return tf.tidy(() => {
    const w = tf.concat(groups.map((g) => g.adapter.headW), 1) as tf.Tensor2D;
    const b = tf.concat(groups.map((g) => g.adapter.headB), 0) as tf.Tensor1D;
    const logits = linear(pooled, w, b);
    return splitByGroup(logits, groups, groups.map((g) => g.adapter.headB.shape[0]));
  });
}
