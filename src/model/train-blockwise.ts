/**
 * The gradients of one training step — of one adapter, or of K adapters grouped in one suffix
 * (suffix-grouped.ts) — back-propagated block by block with recomputation (activation
 * checkpointing). train-step.ts is its only caller.
 *
 * Why: one gradient tape over the suffix keeps every suffix block's saved activations until the
 * backward pass reaches them. Here the suffix runs forward without a tape, keeping only each
 * stage's input (x, h); then
 *   - the last `tapeBlocks` blocks and the head run again as ONE taped segment (no recomputation
 *     beyond that segment's forward, which replaces the first forward's for those blocks), and
 *   - every earlier suffix block is re-run alone under its own short tape, last to first, and the
 *     vector–Jacobian product is pulled through it with the scalar Σ out ⊙ d_out.
 * Peak memory is the segment's activations (or one block's, whichever is larger) instead of the
 * whole suffix's, for the price of running the blocks before the segment forward twice.
 * tapeBlocks = 0 recomputes every block (least memory); ≥ the suffix length (or undefined) tapes
 * the whole suffix and recomputes none. The stages are suffix.ts's, the forward pass's own.
 */
import * as tf from '@tensorflow/tfjs';
import type { Backbone } from './backbone.js';
import { crossEntropy } from './loss.js';
import type { FrozenBlocks } from './native/training-blocks.js';
import type { PrefixState } from './prefix.js';
import { StageKeeper, type Stage } from './suffix.js';
import type { TrainableSuffix } from './suffix-grouped.js';

export interface BlockwiseResult {
  /** Σ over groups of each group's mean cross-entropy (one group: the mean). */
  loss: number;
  /** The logits the loss came from, [rows, classes] (owned by the caller). */
  logits: tf.Tensor2D;
  /** Gradient per variable the loss reaches (owned by the caller). */
  grads: Map<tf.Variable, tf.Tensor>;
  /** Arg-max class of each row's logits (the same logits the loss was computed from). */
  predicted: Int32Array;
}

/** Σ out ⊙ d_out: its gradient w.r.t. a stage's inputs is the vector–Jacobian product. */
function surrogate(out: Stage, dx: tf.Tensor, dh: tf.Tensor | null): tf.Scalar {
  const sx = tf.sum(tf.mul(out.x, dx)) as tf.Scalar;
  return out.h && dh ? tf.add(sx, tf.sum(tf.mul(out.h, dh))) : sx;
}

/**
 * Suffix blocks from `tapeBlocks` before the end (all of them when undefined) are taped with the
 * head. With `frozen` (the backbone's engine runs the frozen blocks, forward and VJP) and stages
 * that can be split at the frozen block, every suffix block runs there instead and only the
 * adapter's own maths is taped (tapeBlocks does not apply: nothing of a block is kept).
 */
export function blockwiseGradients(
  backbone: Backbone,
  suffix: TrainableSuffix,
  state: PrefixState,
  labels: Int32Array | number[],
  tapeBlocks: number | undefined,
  weights?: Float32Array,
  frozen?: FrozenBlocks,
): BlockwiseResult {
  if (frozen && suffix.stages.after) return frozenBlockGradients(backbone, suffix, state, labels, frozen, weights);
  const cfg = backbone.config;
  const { stages } = suffix;
  const keeper = new StageKeeper(state);
  const { grads, accumulate } = gradientSink();
  const engine = tf.engine();
  let logitsT: tf.Tensor2D | null = null;
  let dx: tf.Tensor | null = null;
  let dh: tf.Tensor | null = null;
  try {
    // Forward, no tape, up to the taped tail: keep each block stage's input.
    const taped = tapeBlocks === undefined ? cfg.depth : Math.max(0, Math.floor(tapeBlocks));
    const tail = Math.max(state.split, cfg.depth - taped);
    const inputs: Stage[] = [];
    let cur = keeper.run(stages.pre);
    for (let i = state.split; i < tail; i++) {
      inputs.push(cur);
      const p = cur;
      cur = keeper.run(() => stages.block(i, p));
    }
    // The tail (blocks tail..depth−1, then the head) under one tape.
    const last = cur;
    const tailVars = [...new Set([...Array(cfg.depth - tail).keys()].flatMap((k) => stages.blockVariables(tail + k)))];
    const headVars = suffix.headVariables();
    const headXs: tf.Tensor[] = [last.x, ...(last.h ? [last.h] : []), ...tailVars, ...headVars];
    const head = lossGradients(
      suffix,
      () => {
        let p = last;
        for (let i = tail; i < cfg.depth; i++) p = stages.block(i, p);
        return p.x;
      },
      headXs,
      labels,
      weights,
    );
    logitsT = head.logits;
    const { loss, predicted } = head;
    dx = head.grads[0];
    let at = 1;
    if (last.h) dh = head.grads[at++] ?? null;
    for (const v of tailVars) accumulate(v, head.grads[at++]);
    for (const v of headVars) accumulate(v, head.grads[at++]);
    keeper.release(last.x);
    if (!inputs.some((q) => q.h === last.h)) keeper.release(last.h);
    // Blocks, last to first, each re-run under its own tape.
    for (let k = inputs.length - 1; k >= 0; k--) {
      const i = state.split + k;
      const p = inputs[k];
      const vars = stages.blockVariables(i);
      const xs: tf.Tensor[] = [p.x, ...(p.h ? [p.h] : []), ...vars];
      const gx: tf.Tensor = dx!;
      const gh: tf.Tensor | null = dh;
      const r: { value: tf.Scalar; grads: tf.Tensor[] } = engine.gradients(() => surrogate(stages.block(i, p), gx, gh), xs, undefined, true);
      r.value.dispose();
      dx = r.grads[0] ?? null;
      dh = p.h ? (r.grads[1] ?? null) : null;
      const offset = p.h ? 2 : 1;
      vars.forEach((v, j) => accumulate(v, r.grads[offset + j]));
      gx.dispose();
      gh?.dispose();
      keeper.release(p.x);
      // A block that reads nothing passes h through unchanged: earlier stages may share it.
      if (!inputs.slice(0, k).some((q) => q.h === p.h)) keeper.release(p.h);
    }
    preStageGradients(stages, dx, dh, accumulate);
    return { loss, grads, predicted, logits: logitsT! };
  } catch (err) {
    for (const g of grads.values()) g.dispose();
    (logitsT as tf.Tensor | null)?.dispose();
    throw err;
  } finally {
    dx?.dispose();
    dh?.dispose();
    keeper.disposeAll();
  }
}

/**
 * The loss under one tape: `lastX` runs whatever of the suffix is taped and returns its x, then
 * the head and the (weighted) cross-entropy. Gradients w.r.t. `xs`, in order (owned by the caller).
 */
function lossGradients(
  suffix: TrainableSuffix,
  lastX: () => tf.Tensor3D,
  xs: tf.Tensor[],
  labels: Int32Array | number[],
  weights: Float32Array | undefined,
): { loss: number; predicted: Int32Array; logits: tf.Tensor2D; grads: tf.Tensor[] } {
  let predictedT: tf.Tensor | null = null;
  let logitsT: tf.Tensor2D | null = null;
  try {
    const r = tf.engine().gradients(
      () => {
        const logits = suffix.logits(lastX());
        predictedT = tf.keep(tf.argMax(logits, 1));
        logitsT = tf.keep(logits);
        const ce = crossEntropy(logits, labels, weights);
        return suffix.groups === 1 ? ce : tf.mul(ce, suffix.groups);
      },
      xs,
      undefined,
      true,
    );
    const loss = r.value.dataSync()[0];
    r.value.dispose();
    const predicted = Int32Array.from((predictedT as tf.Tensor | null)?.dataSync() ?? []);
    return { loss, predicted, logits: logitsT!, grads: r.grads };
  } catch (err) {
    (logitsT as tf.Tensor | null)?.dispose();
    throw err;
  } finally {
    (predictedT as tf.Tensor | null)?.dispose();
  }
}

/** Pre-stage: only the reads of the prefix inputs (and the addition after block split−1). */
function preStageGradients(stages: TrainableSuffix['stages'], dx: tf.Tensor | null, dh: tf.Tensor | null, accumulate: (v: tf.Variable, g: tf.Tensor | undefined) => void): void {
  const preVars = stages.preVariables();
  if (preVars.length === 0 || !dx) return;
  const r = tf.engine().gradients(() => surrogate(stages.pre(), dx, dh), preVars, undefined, true);
  r.value.dispose();
  preVars.forEach((v, j) => accumulate(v, r.grads[j]));
}

/** Gradient bookkeeping shared by both paths: one summed gradient per variable. */
function gradientSink(): { grads: Map<tf.Variable, tf.Tensor>; accumulate(v: tf.Variable, g: tf.Tensor | undefined): void } {
  const grads = new Map<tf.Variable, tf.Tensor>();
  return {
    grads,
    accumulate(v, g) {
      if (!g) return;
      const prev = grads.get(v);
      grads.set(v, tf.keep(prev ? tf.add(prev, g) : g));
      if (prev) {
        prev.dispose();
        g.dispose();
      }
    },
  };
}

/**
 * blockwiseGradients with the frozen blocks on the backbone's engine. Forward: x ← after(i, p,
 * Block_i(x)) with Block_i native, keeping each stage's input and block output. Backward, last
 * block to first: the adapter's part of stage i under a short tfjs tape (reads of x, additions;
 * the block output enters it as a sum, so its gradient is the stage's), plus the native VJP of
 * Block_i at its input.
 */
function frozenBlockGradients(
  backbone: Backbone,
  suffix: TrainableSuffix,
  state: PrefixState,
  labels: Int32Array | number[],
  frozen: FrozenBlocks,
  weights?: Float32Array,
): BlockwiseResult {
  const cfg = backbone.config;
  const { stages } = suffix;
  const after = stages.after!;
  const keeper = new StageKeeper(state);
  const { grads, accumulate } = gradientSink();
  const engine = tf.engine();
  let logitsT: tf.Tensor2D | null = null;
  let dx: tf.Tensor | null = null;
  let dh: tf.Tensor | null = null;
  try {
    const inputs: Stage[] = [];
    const outputs: tf.Tensor3D[] = [];
    let cur = keeper.run(stages.pre);
    for (let i = state.split; i < cfg.depth; i++) {
      const p = cur;
      const n = p.x.shape[0];
      const y = keeper.keep(tf.tensor3d(frozen.forward(i, p.x.dataSync() as Float32Array, n), p.x.shape));
      inputs.push(p);
      outputs.push(y);
      cur = keeper.run(() => after(i, p, y));
    }
    const last = cur;
    const headVars = suffix.headVariables();
    const head = lossGradients(suffix, () => last.x, [last.x, ...headVars], labels, weights);
    logitsT = head.logits;
    const { loss, predicted } = head;
    dx = head.grads[0];
    headVars.forEach((v, j) => accumulate(v, head.grads[1 + j]));
    for (let k = inputs.length - 1; k >= 0; k--) {
      const i = state.split + k;
      const p = inputs[k];
      const gx: tf.Tensor = dx!;
      const gh: tf.Tensor | null = dh;
      const vars = stages.blockVariables(i);
      const xs: tf.Tensor[] = [p.x, ...(p.h ? [p.h] : []), ...vars];
      const r: { value: tf.Scalar; grads: tf.Tensor[] } = engine.gradients(() => surrogate(after(i, p, outputs[k]), gx, gh), xs, undefined, true);
      r.value.dispose();
      const offset = p.h ? 2 : 1;
      vars.forEach((v, j) => accumulate(v, r.grads[offset + j]));
      const throughBlock = tf.tensor3d(frozen.vjp(i, p.x.dataSync() as Float32Array, gx.dataSync() as Float32Array, p.x.shape[0]), p.x.shape);
      const viaReads = r.grads[0];
      dx = viaReads ? tf.tidy(() => tf.add(throughBlock, viaReads)) : throughBlock;
      if (viaReads) {
        viaReads.dispose();
        throughBlock.dispose();
      }
      dh = p.h ? (r.grads[1] ?? null) : null;
      gx.dispose();
      gh?.dispose();
      // A block output can be the next stage's x (no addition after it) and h passes through
      // blocks that read nothing: free only what no earlier stage still holds.
      for (const t of new Set([outputs[k], p.x, p.h])) {
        if (t && !inputs.slice(0, k).some((q) => q.x === t || q.h === t) && !outputs.slice(0, k).includes(t as tf.Tensor3D)) keeper.release(t);
      }
    }
    preStageGradients(stages, dx, dh, accumulate);
    return { loss, grads, predicted, logits: logitsT! };
  } catch (err) {
    for (const g of grads.values()) g.dispose();
    (logitsT as tf.Tensor | null)?.dispose();
    throw err;
  } finally {
    dx?.dispose();
    dh?.dispose();
    keeper.disposeAll();
  }
}
