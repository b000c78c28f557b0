/**
 * The gradients of a training step with the frozen blocks on the backbone's engine
 * (native/training-blocks.ts: each block's forward and VJP on onnxruntime); train-blockwise.ts
 * sends a step here when the backbone has them. Only the adapter's own maths (CSN reads,
 * additions, head) runs on tfjs.
 */
import * as tf from '@tensorflow/tfjs';
import type { Backbone } from './backbone.js';
import type { FrozenBlocks } from './native/training-blocks.js';
import type { PrefixState } from './prefix.js';
import { StageKeeper, type Stage } from './suffix.js';
import type { TrainableSuffix } from './suffix-grouped.js';
import { gradientSink, lossGradients, preStageGradients, surrogate, type BlockwiseResult } from './train-grad-parts.js';

/**
 * Bytes the adapter's activations of a whole suffix may hold on one tape (one-tape path, below):
 * an estimate of ≈ 16 tensors of [rows, tokens, d] per suffix block. The bundled backbone's
 * 14-candidate step (448 × 17 × 64, 2 blocks) is ≈ 60 MB; ViT-B/16 at batch 32 (32 × 197 × 768,
 * 6 blocks) ≈ 1.9 GB, which keeps the recomputing path (the wasm heap stops at 4 GiB).
 */
export const FROZEN_ONE_TAPE_MAX_BYTES = 256 * 2 ** 20;

/**
 * One step's gradients with the frozen blocks on the engine: the whole suffix under one tape
 * (frozenOneTapeGradients) where its adapter activations are small, or stage by stage with the
 * adapter's maths recomputed (frozenBlockGradients) — always for tapeBlocks 0 (least memory).
 */
export function frozenGradients(
  backbone: Backbone,
  suffix: TrainableSuffix,
  state: PrefixState,
  labels: Int32Array | number[],
  tapeBlocks: number | undefined,
  frozen: FrozenBlocks,
  weights?: Float32Array,
): BlockwiseResult {
  const cfg = backbone.config;
  const blocks = cfg.depth - state.split;
  const estimate = labels.length * cfg.tokens * cfg.width * 4 * 16 * blocks;
  const oneTape = tapeBlocks !== 0 && (tapeBlocks === undefined || tapeBlocks >= blocks || estimate <= FROZEN_ONE_TAPE_MAX_BYTES);
  return oneTape ? frozenOneTapeGradients(backbone, suffix, state, labels, frozen, weights) : frozenBlockGradients(backbone, suffix, state, labels, frozen, weights);
}

/**
 * The suffix — pre stage, each frozen block as a custom-gradient op whose forward and VJP run
 * on the engine, each stage's adapter maths, the head — under ONE tfjs tape: the adapter's
 * forward runs once (the stage-by-stage path runs it again under each stage's tape, plus a
 * Σ out ⊙ d_out surrogate per stage), at the price of keeping every stage's activations until
 * the backward pass reaches them.
 */
function frozenOneTapeGradients(
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
  const block = (i: number) =>
    tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const [x, save] = args as [tf.Tensor, tf.GradSaveFunc];
      const n = x.shape[0];
      save([x]);
      return {
        value: tf.tensor3d(frozen.forward(i, x.dataSync() as Float32Array, n), x.shape as [number, number, number]),
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
          tf.tensor3d(frozen.vjp(i, saved[0].dataSync() as Float32Array, dy.dataSync() as Float32Array, n), x.shape as [number, number, number]),
      };
    });
  const vars = [...new Set([...stages.preVariables(), ...[...Array(cfg.depth - state.split).keys()].flatMap((k) => stages.blockVariables(state.split + k))])];
  const headVars = suffix.headVariables();
  const { grads, accumulate } = gradientSink();
  const head = lossGradients(
    suffix,
    () => {
      let p: Stage = stages.pre();
      for (let i = state.split; i < cfg.depth; i++) {
        const q = p;
        p = after(i, q, block(i)(q.x) as tf.Tensor3D);
      }
      return p.x;
    },
    [...vars, ...headVars],
    labels,
    weights,
  );
  [...vars, ...headVars].forEach((v, j) => accumulate(v, head.grads[j]));
  return { loss: head.loss, grads, predicted: head.predicted, logits: head.logits };
}

/**
 * blockwiseGradients with the frozen blocks on the backbone's engine. Forward: x ← after(i, p,
 * Block_i(x)) with Block_i native, keeping each stage's input and block output. Backward, last
 * block to first: the adapter's part of stage i under a short tfjs tape (reads of x, additions;
 * the block output enters it as a sum, so its gradient is the stage's), plus the native VJP of
 * Block_i at its input.
 */
export function frozenBlockGradients(
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
