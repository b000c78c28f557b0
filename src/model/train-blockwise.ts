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
import type { FrozenBlocks } from './native/training-blocks.js';
import type { PrefixState } from './prefix.js';
import { StageKeeper, type Stage } from './suffix.js';
import type { TrainableSuffix } from './suffix-grouped.js';
import { frozenGradients } from './train-frozen.js';
import { gradientSink, lossGradients, preStageGradients, surrogate, type BlockwiseResult } from './train-grad-parts.js';

export type { BlockwiseResult } from './train-grad-parts.js';

/**
 * Suffix blocks from `tapeBlocks` before the end (all of them when undefined) are taped with the
 * head. With `frozen` (the backbone's engine runs the frozen blocks, forward and VJP) and stages
 * that can be split at the frozen block, every suffix block runs there instead and only the
 * adapter's own maths is taped (train-frozen.ts: nothing of a block is kept; tapeBlocks 0 still
 * means least memory).
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
  if (frozen && suffix.stages.after) return frozenGradients(backbone, suffix, state, labels, tapeBlocks, frozen, weights);
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
