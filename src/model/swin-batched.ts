/**
 * The Swin suffix for several adapters in one batch: every row through each frozen block (and
 * patch merging) together, each row with its own adapter's CSN — the Swin counterpart of
 * forward-batched.ts, with a fixed number of ops per block whatever the number of adapters:
 *
 *   read   h += (x_r · A_r,i) · B_r,i for every row at once (two batched matMuls; each row's A and
 *          B gathered from a per-block stack of the adapters', zeros where one does not read i,
 *          ranks padded with zeros)
 *   add    x += a_i(r) · fuse_r,s(θ_{β_r}(h))  (a_i(r) = 1 where r's adapter adds after i)
 *   fuse   Σ_taps shift(θ) · w_r,tap on the stage's grid, K×K the largest kernel in the batch,
 *          each adapter's stage-s taps inside it, plain DTL rows the identity tap
 *   stage  the patch merging opens it and h restarts (as in suffix.ts)
 *
 * Padding and masking add exact zeros, so each row gets its own adapter's numbers (to float32
 * rounding of the fusion sum's order).
 */
import * as tf from '@tensorflow/tfjs';
import type { Backbone } from './backbone.js';
import { pool } from './layers.js';
import type { PrefixState } from './prefix.js';
import type { SuffixGroup } from './suffix.js';
import { patchMerge, swinBlock, swinOpensStage } from './swin-layers.js';

/** Pooled features of every row, [Σ rows, C_last], groups one after the other (groups validated by the caller). The caller owns them. */
export function swinBatchedPooled(backbone: Backbone, state: PrefixState, groups: SuffixGroup[]): tf.Tensor2D {
  const cfg = backbone.config;
  const a = cfg.swin!;
  const allRows = groups.flatMap((g) => g.rows);
  const R = allRows.length;
  const groupOfRow = groups.flatMap((g, gi) => g.rows.map(() => gi));
  const k = Math.max(...groups.map((g) => g.adapter.spec.rank));
  const reads = groups.map((g) => new Set(g.adapter.spec.loraBeforeBlocks));
  const adds = groups.map((g) => new Set(g.adapter.spec.addAfterBlocks));
  const K = Math.max(0, ...groups.map((g) => (g.adapter.swin?.fusions ? g.adapter.spec.fusionKernel : 0)));
  const split = state.split;

  // Per-batch constants, made once and kept for the whole suffix (disposed in `finally`): the
  // per-block versions cost a dozen small ops per adapter per block, which on a small Swin was
  // most of the gap between a mixed batch and a single-adapter one (bench P1).
  const kept: tf.Tensor[] = [];
  const keep = <T extends tf.Tensor>(t: T): T => {
    kept.push(tf.keep(t));
    return t;
  };
  const stageFirst = a.depths.map((_, s) => a.blockStage.indexOf(s));

  /**
   * Every adapter's reads of stage s's blocks in two tensors, built on the stage's first read: A as
   * [G·n_s, d_s, k], B as [G·n_s, k, d_s] (entry g·n_s + j for the stage's j-th block; zeros where
   * adapter g does not read it; ranks below k padded with zeros) — forward-batched.ts's stackReads per stage.
   */
  const stacks = new Map<number, { a: tf.Tensor3D; b: tf.Tensor3D }>();
  const stackOf = (s: number) => {
    let st = stacks.get(s);
    if (st) return st;
    const d = a.stageWidths[s];
    const n = a.depths[s];
    st = tf.tidy(() => {
      const zeros = new Map<number, [tf.Tensor2D, tf.Tensor2D]>();
      const blocksOf = (g: SuffixGroup, gi: number) => {
        const r = g.adapter.spec.rank;
        let z = zeros.get(r);
        if (!z) zeros.set(r, (z = [tf.zeros([d, r]), tf.zeros([r, d])]));
        const as: tf.Tensor2D[] = [];
        const bs: tf.Tensor2D[] = [];
        for (let j = 0; j < n; j++) {
          const p = reads[gi].has(stageFirst[s] + j) ? g.adapter.reads.get(stageFirst[s] + j) : undefined;
          as.push(p ? p.a : z[0]);
          bs.push(p ? p.b : z[1]);
        }
        return { as, bs };
      };
      if (groups.every((g) => g.adapter.spec.rank === k)) {
        // One rank (the usual case): one concat for every A and one for every B, whatever G.
        const all = groups.map(blocksOf);
        return {
          a: tf.reshape(tf.concat(all.flatMap((x) => x.as), 0), [groups.length * n, d, k]) as tf.Tensor3D,
          b: tf.reshape(tf.concat(all.flatMap((x) => x.bs), 0), [groups.length * n, k, d]) as tf.Tensor3D,
        };
      }
      const perGroup = groups.map((g, gi) => {
        const r = g.adapter.spec.rank;
        const { as, bs } = blocksOf(g, gi);
        let ga = tf.concat(as, 0) as tf.Tensor2D; // [n·d, r]
        let gb = tf.concat(bs, 0) as tf.Tensor2D; // [n·r, d]
        if (r < k) {
          ga = tf.pad(ga, [[0, 0], [0, k - r]]);
          gb = tf.reshape(tf.pad(tf.reshape(gb, [n, r, d]), [[0, 0], [0, k - r], [0, 0]]), [n * k, d]);
        }
        return { ga, gb };
      });
      const cat = (xs: tf.Tensor2D[]) => (xs.length === 1 ? xs[0] : tf.concat(xs, 0));
      return {
        a: tf.reshape(cat(perGroup.map((p) => p.ga)), [groups.length * n, d, k]) as tf.Tensor3D,
        b: tf.reshape(cat(perGroup.map((p) => p.gb)), [groups.length * n, k, d]) as tf.Tensor3D,
      };
    });
    keep(st.a);
    keep(st.b);
    stacks.set(s, st);
    return st;
  };

  /** Each row's own read of block i on x [R, t, d]: [R, t, d] (two batched matMuls over the rows). */
  const readAll = (i: number, x: tf.Tensor3D): tf.Tensor3D => {
    const s = a.blockStage[i];
    const st = stackOf(s);
    const idx = tf.tensor1d(Int32Array.from(groupOfRow, (g) => g * a.depths[s] + (i - stageFirst[s])), 'int32');
    return tf.matMul(tf.matMul(x, tf.gather(st.a, idx) as tf.Tensor3D), tf.gather(st.b, idx) as tf.Tensor3D);
  };
  const perRow = (f: (g: number) => number) => tf.tensor3d(Float32Array.from(groupOfRow, f), [R, 1, 1]);
  const betas = keep(perRow((gi) => groups[gi].adapter.spec.beta));

  /** Per-row taps of stage s [R, K², d_s], each adapter's k×k taps inside the K×K grid (identity for plain DTL); made once per stage. */
  const tapsOf = new Map<number, tf.Tensor3D>();
  const rowTaps = (s: number): tf.Tensor3D => {
    let t = tapsOf.get(s);
    if (t) return t;
    const d = a.stageWidths[s];
    const before = (K - 1) >> 1;
    t = keep(
      tf.tidy(() => {
        const taps = groups.map((grp) => {
          const f = grp.adapter.swin?.fusions?.[s];
          if (!f) {
            const id = new Float32Array(K * K * d);
            id.fill(1, (before * K + before) * d, (before * K + before + 1) * d);
            return tf.tensor2d(id, [K * K, d]);
          }
          const kk = grp.adapter.spec.fusionKernel;
          const off = before - ((kk - 1) >> 1);
          return tf.reshape(tf.pad(tf.reshape(f, [kk, kk, d]), [[off, K - kk - off], [off, K - kk - off], [0, 0]]), [K * K, d]) as tf.Tensor2D;
        });
        return tf.gather(tf.stack(taps), tf.tensor1d(groupOfRow, 'int32')) as tf.Tensor3D;
      }),
    );
    tapsOf.set(s, t);
    return t;
  };

  /** fuse(θ) of every row on stage s's grid with its own taps (identity for plain DTL). */
  const fuse = (s: number, th: tf.Tensor3D): tf.Tensor3D => {
    if (K === 0) return th;
    const g = a.stageGrids[s];
    const d = a.stageWidths[s];
    const before = (K - 1) >> 1;
    const taps = rowTaps(s); // [R, K², d]
    const padded = tf.pad(tf.reshape(th, [R, g, g, d]), [[0, 0], [before, K - 1 - before], [before, K - 1 - before], [0, 0]]);
    const terms: tf.Tensor4D[] = [];
    for (let y = 0; y < K; y++) {
      for (let x = 0; x < K; x++) {
        const w = tf.reshape(tf.slice(taps, [0, y * K + x, 0], [R, 1, d]), [R, 1, 1, d]);
        terms.push(tf.mul(tf.slice(padded, [0, y, x, 0], [R, g, g, d]), w));
      }
    }
    return tf.reshape(terms.length === 1 ? terms[0] : tf.addN(terms), [R, g * g, d]);
  };

  /** x + a_i(r)·fuse(θ(h)) for the rows whose adapter adds after block i. */
  const addition = (i: number, x: tf.Tensor3D, h: tf.Tensor3D | null): tf.Tensor3D => {
    if (!h || !adds.some((s) => s.has(i))) return x;
    const th = fuse(a.blockStage[i], tf.mul(h, tf.sigmoid(tf.mul(h, betas))) as tf.Tensor3D);
    return tf.add(x, groupOfRow.every((gi) => adds[gi].has(i)) ? th : tf.mul(th, perRow((gi) => (adds[gi].has(i) ? 1 : 0))));
  };

  let x: tf.Tensor3D | null = null;
  let h: tf.Tensor3D | null = null;
  const step = (f: () => [tf.Tensor3D, tf.Tensor3D | null]) => {
    const [nx, nh] = tf.tidy(() => {
      const [p, q] = f();
      return q ? [p, q] : [p];
    }) as [tf.Tensor3D, tf.Tensor3D?];
    for (const t of [x, h]) if (t && t !== nx && t !== nh && !state.inputs.includes(t) && t !== state.x) t.dispose();
    x = tf.keep(nx);
    h = nh ? tf.keep(nh) : null;
  };
  try {
    step(() => {
      const idx = tf.tensor1d(allRows, 'int32');
      const pick = (t: tf.Tensor3D) => tf.gather(t, idx) as tf.Tensor3D;
      // The reads of the prefix's block inputs in the stage of block split−1 (the accumulator restarts per stage).
      const early = split === 0 ? [] : [...new Set(groups.flatMap((g) => g.adapter.spec.loraBeforeBlocks))].filter((i) => i < split && a.blockStage[i] === a.blockStage[split - 1]);
      const terms = early.map((i) => readAll(i, pick(state.inputs[i])));
      const h0 = terms.length === 0 ? null : terms.length === 1 ? terms[0] : (tf.addN(terms) as tf.Tensor3D);
      const x0 = pick(state.x);
      return [split > 0 ? addition(split - 1, x0, h0) : x0, h0];
    });
    for (let i = split; i < cfg.depth; i++) {
      step(() => {
        const opens = swinOpensStage(cfg, i);
        const xi = opens ? patchMerge(backbone, a.blockStage[i] - 1, x!) : x!;
        const prior: tf.Tensor3D | null = opens ? null : h;
        const read = reads.some((s) => s.has(i)) ? readAll(i, xi) : null;
        const hi: tf.Tensor3D | null = read ? (prior ? tf.add<tf.Tensor3D>(prior, read) : read) : prior;
        return [addition(i, swinBlock(backbone, i, xi), hi), hi];
      });
    }
    const last: tf.Tensor3D = x!;
    return tf.tidy(() => pool(backbone, last));
  } finally {
    for (const t of [x, h] as Array<tf.Tensor3D | null>) if (t && !t.isDisposed) t.dispose();
    for (const t of kept) t.dispose();
  }
}
