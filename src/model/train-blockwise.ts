/**
 * Block-by-block back-propagation with recomputation (activation checkpointing) for one adapter.
 *
 * Why: tfjs keeps every taped op's saved inputs (on wasm as real copies) and every intermediate
 * gradient until a gradient call ends, so one tape over the suffix holds all suffix blocks'
 * activations and gradients at once. Here the suffix runs forward without a tape, keeping only
 * each block's input (x, h); the backward then re-runs one block at a time under its own short
 * tape and pulls the vector–Jacobian product through it with the scalar Σ out ⊙ d_out. Peak
 * memory is one block's worth, at the price of running the suffix forward twice.
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
}

export function blockwiseGradients(backbone: Backbone, adapter: Adapter, state: PrefixState, labels: Int32Array | number[]): BlockwiseResult {
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
    // Forward, no tape: keep each block stage's input.
    const inputs: Pair[] = [];
    let cur = run(pre);
    for (let i = state.split; i < cfg.depth; i++) {
      inputs.push(cur);
      const p = cur;
      cur = run(() => block(i, p));
    }
    // Head.
    const last = cur;
    const head = engine.gradients(
      () => crossEntropy(linear(pool(backbone, last.x), adapter.headW, adapter.headB), labels),
      [last.x, adapter.headW, adapter.headB],
      undefined,
      true,
    );
    const loss = head.value.dataSync()[0];
    head.value.dispose();
    dx = head.grads[0];
    accumulate(adapter.headW as tf.Variable, head.grads[1]);
    accumulate(adapter.headB as tf.Variable, head.grads[2]);
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
    return { loss, grads };
  } catch (err) {
    for (const g of grads.values()) g.dispose();
    throw err;
  } finally {
    dx?.dispose();
    dh?.dispose();
    for (const t of owned) t.dispose();
  }
}
