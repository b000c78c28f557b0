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

  /** Each row's own read of block i on x [R, t, d]: [R, t, d]. */
  const readAll = (i: number, x: tf.Tensor3D): tf.Tensor3D => {
    const d = x.shape[2];
    const as: tf.Tensor2D[] = [];
    const bs: tf.Tensor2D[] = [];
    groups.forEach((g, gi) => {
      const p = reads[gi].has(i) ? g.adapter.reads.get(i)! : null;
      const r = g.adapter.spec.rank;
      const pa = p ? p.a : tf.zeros<tf.Rank.R2>([d, r]);
      const pb = p ? p.b : tf.zeros<tf.Rank.R2>([r, d]);
      as.push(r < k ? tf.pad(pa, [[0, 0], [0, k - r]]) : pa);
      bs.push(r < k ? tf.pad(pb, [[0, k - r], [0, 0]]) : pb);
    });
    const idx = tf.tensor1d(groupOfRow, 'int32');
    return tf.matMul(tf.matMul(x, tf.gather(tf.stack(as), idx) as tf.Tensor3D), tf.gather(tf.stack(bs), idx) as tf.Tensor3D);
  };
  const perRow = (f: (g: number) => number) => tf.tensor3d(Float32Array.from(groupOfRow, f), [R, 1, 1]);

  /** fuse(θ) of every row on stage s's grid with its own taps (identity for plain DTL). */
  const fuse = (s: number, th: tf.Tensor3D): tf.Tensor3D => {
    if (K === 0) return th;
    const g = a.stageGrids[s];
    const d = a.stageWidths[s];
    const before = (K - 1) >> 1;
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
    const rowTaps = tf.gather(tf.stack(taps), tf.tensor1d(groupOfRow, 'int32')) as tf.Tensor3D; // [R, K², d]
    const padded = tf.pad(tf.reshape(th, [R, g, g, d]), [[0, 0], [before, K - 1 - before], [before, K - 1 - before], [0, 0]]);
    const terms: tf.Tensor4D[] = [];
    for (let y = 0; y < K; y++) {
      for (let x = 0; x < K; x++) {
        const w = tf.reshape(tf.slice(rowTaps, [0, y * K + x, 0], [R, 1, d]), [R, 1, 1, d]);
        terms.push(tf.mul(tf.slice(padded, [0, y, x, 0], [R, g, g, d]), w));
      }
    }
    return tf.reshape(terms.length === 1 ? terms[0] : tf.addN(terms), [R, g * g, d]);
  };

  /** x + a_i(r)·fuse(θ(h)) for the rows whose adapter adds after block i. */
  const addition = (i: number, x: tf.Tensor3D, h: tf.Tensor3D | null): tf.Tensor3D => {
    if (!h || !adds.some((s) => s.has(i))) return x;
    const th = tf.mul(h, tf.sigmoid(tf.mul(h, perRow((gi) => groups[gi].adapter.spec.beta))));
    const gate = perRow((gi) => (adds[gi].has(i) ? 1 : 0));
    return tf.add(x, tf.mul(fuse(a.blockStage[i], th as tf.Tensor3D), gate));
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
  }
}
