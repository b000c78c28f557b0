/**
 * The shared prefix of the DTL forward pass: x_0 and blocks 0..M−1 (M = first addition + 1). No
 * adapter touches them (the addition after block M−1 belongs to the suffix), so they run once per
 * image for every tenant, outside any gradient tape, one tidy per block. The CSN of each adapter
 * later reads the block inputs kept here. On a Swin, x_i of the first block of a stage is the
 * patch merging's output (what that block reads), and `x` is block split−1's output before it.
 */
import * as tf from '@tensorflow/tfjs';
import { AppError } from '../errors.js';
import type { AdapterSpec } from './adapter.js';
import type { Backbone } from './backbone.js';
import { embed, vitBlock } from './layers.js';
import { patchMerge, swinBlock, swinEmbed, swinOpensStage } from './swin-layers.js';

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
  let x = tf.keep(tf.tidy(() => (backbone.swin ? swinEmbed(backbone, pixels) : embed(backbone, pixels))));
  try {
    for (let i = 0; i < split; i++) {
      // A Swin block that opens a stage reads (and runs on) the patch merging's output.
      if (backbone.swin && swinOpensStage(backbone.config, i)) {
        const before = x;
        x = tf.keep(tf.tidy(() => patchMerge(backbone, backbone.config.swin!.blockStage[i] - 1, before)));
        before.dispose();
      }
      inputs.push(x);
      const input = x;
      x = tf.keep(tf.tidy(() => (backbone.swin ? swinBlock(backbone, i, input) : vitBlock(input, backbone.blocks[i], backbone.config))));
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

export function checkRows(rows: number[], n: number): void {
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
