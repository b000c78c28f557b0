/**
 * Block-by-block back-propagation with recomputation (activation checkpointing) for one adapter.
 *
 * Why: one gradient tape over the suffix keeps every suffix block's saved activations until the
 * backward pass reaches them. Here the suffix runs forward without a tape, keeping only each
 * block's input (x, h); then
 *   - the last `tapeBlocks` blocks and the head run again as ONE taped segment (no recomputation
 *     beyond that segment's forward, which replaces the first forward's for those blocks), and
 *   - every earlier suffix block is re-run alone under its own short tape, last to first, and the
 *     vector–Jacobian product is pulled through it with the scalar Σ out ⊙ d_out.
 * Peak memory is the segment's activations (or one block's, whichever is larger) instead of the
 * whole suffix's, for the price of running the blocks before the segment forward twice.
 * tapeBlocks = 0 recomputes every block (least memory); ≥ the suffix length recomputes none.
 *
 * The maths is the single-adapter forward of forward.ts, stage by stage:
 *   pre      h = Σ reads of the prefix inputs; x = state.x (+ addition after block split−1)
 *   block i  h ← h + read_i(x) (if read); x ← Block_i(x) (+ fuse(θ(h)) if add)
 *   head     loss = CE(head(pool(x)), labels)
 */
import * as tf from '@tensorflow/tfjs';
import type { Adapter } from './adapter.js';
import type { Backbone } from './backbone.js';
import type { PrefixState } from './forward.js';
import { csnAddition, csnRead, linear, pool, vitBlock } from './layers.js';
import { crossEntropy } from './loss.js';

interface Pair {
  x: tf.Tensor3D;
  h: tf.Tensor2D | null;
}

export interface BlockwiseResult {
  loss: number;
  /** Gradient per variable the loss reaches (owned by the caller). */
  grads: Map<tf.Variable, tf.Tensor>;
  /** Arg-max class of each row's logits (the same logits the loss was computed from). */
  predicted: Int32Array;
}

export interface BlockwiseOptions {
  /** Suffix blocks (the last ones) kept on one tape with the head; the earlier ones are recomputed. Default 0. */
  tapeBlocks?: number;
}

export function blockwiseGradients(
  backbone: Backbone,
  adapter: Adapter,
  state: PrefixState,
  labels: Int32Array | number[],
  options: BlockwiseOptions = {},
): BlockwiseResult {
  const cfg = backbone.config;
  const spec = adapter.spec;
  const n = state.x.shape[0];
  const reads = new Set(spec.loraBeforeBlocks);
  const adds = new Set(spec.addAfterBlocks);
  const early = spec.loraBeforeBlocks.filter((i) => i < state.split);

  const addition = (i: number, y: tf.Tensor3D, h: tf.Tensor2D | null): tf.Tensor3D =>
    adds.has(i) && h ? tf.add<tf.Tensor3D>(y, csnAddition(h, n, cfg, spec.beta, adapter.fusion, spec.fusionKernel)) : y;
  const readAt = (i: number, x: tf.Tensor3D) => csnRead(x, adapter.reads.get(i)!.a, adapter.reads.get(i)!.b);
  const pre = (): Pair => {
    const terms = early.map((i) => readAt(i, state.inputs[i]));
    const h = terms.length === 0 ? null : terms.length === 1 ? terms[0] : tf.addN(terms);
    return { x: state.split > 0 ? addition(state.split - 1, state.x, h) : state.x, h };
  };
  const block = (i: number, p: Pair): Pair => {
    const h = reads.has(i) ? (p.h ? tf.add<tf.Tensor2D>(p.h, readAt(i, p.x)) : readAt(i, p.x)) : p.h;
    return { x: addition(i, vitBlock(p.x, backbone.blocks[i], cfg), h), h };
  };
  const fusionIf = (i: number) => (adds.has(i) && adapter.fusion ? [adapter.fusion as tf.Variable] : []);
  const readVars = (i: number) => [adapter.reads.get(i)!.a, adapter.reads.get(i)!.b] as tf.Variable[];

  const owned = new Set<tf.Tensor>();
  const own = <T extends tf.Tensor | null>(t: T): T => {
    if (t && !owned.has(t) && !isStateTensor(t)) owned.add(tf.keep(t));
    return t;
  };
  const isStateTensor = (t: tf.Tensor) => t === state.x || state.inputs.includes(t as tf.Tensor3D);
  const release = (t: tf.Tensor | null) => {
    if (t && owned.delete(t)) t.dispose();
  };
  /** Runs a stage in a tidy, keeping its outputs. */
  const run = (f: () => Pair): Pair => {
    const [x, h] = tf.tidy(() => {
      const p = f();
      return p.h ? [p.x, p.h] : [p.x];
    }) as [tf.Tensor3D, tf.Tensor2D?];
    return { x: own(x), h: own(h ?? null) };
  };
  /** Σ out ⊙ d_out: its gradient w.r.t. a stage's inputs is the vector–Jacobian product. */
  const surrogate = (out: Pair, dx: tf.Tensor, dh: tf.Tensor | null): tf.Scalar => {
    const sx = tf.sum(tf.mul(out.x, dx)) as tf.Scalar;
    return out.h && dh ? tf.add(sx, tf.sum(tf.mul(out.h, dh))) : sx;
  };

  const grads = new Map<tf.Variable, tf.Tensor>();
  const accumulate = (v: tf.Variable, g: tf.Tensor | undefined) => {
    if (!g) return;
    const prev = grads.get(v);
    if (!prev) {
      grads.set(v, tf.keep(g));
      return;
    }
    grads.set(v, tf.keep(tf.add(prev, g)));
    prev.dispose();
    g.dispose();
  };
  const engine = tf.engine();
  let dx: tf.Tensor | null = null;
  let dh: tf.Tensor | null = null;
  try {
    // Forward, no tape, up to the taped tail: keep each block stage's input.
    const tail = Math.max(state.split, cfg.depth - Math.max(0, Math.floor(options.tapeBlocks ?? 0)));
    const inputs: Pair[] = [];
    let cur = run(pre);
    for (let i = state.split; i < tail; i++) {
      inputs.push(cur);
      const p = cur;
      cur = run(() => block(i, p));
    }
    // The tail (blocks tail..depth−1, then the head) under one tape.
    const last = cur;
    const tailVars = [...Array(cfg.depth - tail).keys()].map((k) => tail + k).flatMap((i) => (reads.has(i) ? readVars(i) : []));
    if (adapter.fusion && [...adds].some((i) => i >= tail)) tailVars.push(adapter.fusion as tf.Variable);
    const headXs: tf.Tensor[] = [last.x, ...(last.h ? [last.h] : []), ...tailVars, adapter.headW, adapter.headB];
    let predictedT: tf.Tensor | null = null;
    const head = engine.gradients(
      () => {
        let p = last;
        for (let i = tail; i < cfg.depth; i++) p = block(i, p);
        const logits = linear(pool(backbone, p.x), adapter.headW, adapter.headB);
        predictedT = tf.keep(tf.argMax(logits, 1));
        return crossEntropy(logits, labels);
      },
      headXs,
      undefined,
      true,
    );
    const loss = head.value.dataSync()[0];
    head.value.dispose();
    const predicted = Int32Array.from((predictedT as tf.Tensor | null)?.dataSync() ?? []);
    (predictedT as tf.Tensor | null)?.dispose();
    dx = head.grads[0];
    let at = 1;
    if (last.h) dh = head.grads[at++] ?? null;
    for (const v of tailVars) accumulate(v, head.grads[at++]);
    accumulate(adapter.headW as tf.Variable, head.grads[at++]);
    accumulate(adapter.headB as tf.Variable, head.grads[at++]);
    release(last.x);
    if (!inputs.some((q) => q.h === last.h)) release(last.h);
    // Blocks, last to first, each re-run under its own tape.
    for (let k = inputs.length - 1; k >= 0; k--) {
      const i = state.split + k;
      const p = inputs[k];
      const vars = [...(reads.has(i) ? readVars(i) : []), ...fusionIf(i)];
      const xs: tf.Tensor[] = [p.x, ...(p.h ? [p.h] : []), ...vars];
      const gx: tf.Tensor = dx!;
      const gh: tf.Tensor | null = dh;
      const r: { value: tf.Scalar; grads: tf.Tensor[] } = engine.gradients(() => surrogate(block(i, p), gx, gh), xs, undefined, true);
      r.value.dispose();
      dx = r.grads[0] ?? null;
      dh = p.h ? (r.grads[1] ?? null) : null;
      const offset = p.h ? 2 : 1;
      vars.forEach((v, j) => accumulate(v, r.grads[offset + j]));
      gx.dispose();
      gh?.dispose();
      release(p.x);
      // A block that reads nothing passes h through unchanged: earlier stages may share it.
      if (!inputs.slice(0, k).some((q) => q.h === p.h)) release(p.h);
    }
    // Pre-stage: only the reads of the prefix inputs (and the addition after block split−1).
    const preVars = [...early.flatMap(readVars), ...(state.split > 0 ? fusionIf(state.split - 1) : [])];
    if (preVars.length > 0 && dx) {
      const gx: tf.Tensor = dx;
      const gh: tf.Tensor | null = dh;
      const r: { value: tf.Scalar; grads: tf.Tensor[] } = engine.gradients(() => surrogate(pre(), gx, gh), preVars, undefined, true);
      r.value.dispose();
      preVars.forEach((v, j) => accumulate(v, r.grads[j]));
    }
    return { loss, grads, predicted };
  } catch (err) {
    for (const g of grads.values()) g.dispose();
    throw err;
  } finally {
    dx?.dispose();
    dh?.dispose();
    for (const t of owned) t.dispose();
  }
}
