/**
 * The serving forward on the backbone's engine (attach.ts): with a native backbone the prefix
 * and every suffix block run on onnxruntime, and between blocks the batched suffix's CSN reads
 * and per-row additions (DTL+ fusion included) and the heads run on tfjs — the same stages as
 * forward-batched.ts, so each row still gets its own adapter. Without one, the tfjs forward.
 * Async: each native run is awaited, so the event loop turns between runs. A suffix stretch
 * with nothing between its blocks (no addition, no read) is one run.
 */
import * as tf from '@tensorflow/tfjs';
import type { Adapter } from '../adapter.js';
import type { Backbone } from '../backbone.js';
import { batchedHeads, batchedSuffix } from '../forward-batched.js';
import { forwardSuffix } from '../forward.js';
import { pool } from '../layers.js';
import { disposePrefix, runPrefix, splitPoint, type PrefixState } from '../prefix.js';
import { imagesToArray } from '../preprocess.js';
import { checkSuffixGroups, type SuffixGroup } from '../suffix.js';
import { nativeOf } from './attach.js';

/** runPrefix on the backbone's engine, for preprocessed images [S·S·3] each. Free with disposePrefix. */
export async function enginePrefix(backbone: Backbone, images: Float32Array[], split: number): Promise<PrefixState> {
  const pixels = imagesToArray(images, backbone.config);
  const n = images.length;
  const { imageSize: s, tokens, width } = backbone.config;
  const native = nativeOf(backbone);
  if (!native) {
    const t = tf.tensor4d(pixels, [n, s, s, 3]);
    try {
      return runPrefix(backbone, t, split);
    } finally {
      t.dispose();
    }
  }
  const out = await native.prefix(pixels, n, split);
  const made: tf.Tensor3D[] = [];
  try {
    for (const a of [...out.inputs, out.x]) made.push(tf.tensor3d(a, [n, tokens, width]));
  } catch (err) {
    for (const t of made) t.dispose();
    throw err;
  }
  return { inputs: made.slice(0, split), x: made[split], split };
}

/**
 * The prefix's block inputs `blocks` and its output, as arrays [n, tokens, d] (the training prefix
 * store's rows): on the native engine they never enter the tfjs (wasm) heap.
 */
export async function enginePrefixArrays(
  backbone: Backbone,
  images: Float32Array[],
  split: number,
  blocks: readonly number[],
): Promise<{ inputs: Float32Array[]; x: Float32Array }> {
  const native = nativeOf(backbone);
  if (native) {
    return native.prefix(imagesToArray(images, backbone.config), images.length, split, blocks);
  }
  const state = await enginePrefix(backbone, images, split);
  try {
    return { inputs: blocks.map((b) => state.inputs[b].dataSync() as Float32Array), x: state.x.dataSync() as Float32Array };
  } finally {
    disposePrefix(state);
  }
}

/** forwardSuffix on the backbone's engine: logits per group. The caller owns them. */
export async function engineSuffix(backbone: Backbone, state: PrefixState, groups: SuffixGroup[]): Promise<tf.Tensor2D[]> {
  const native = nativeOf(backbone);
  if (!native) return forwardSuffix(backbone, state, groups);
  checkSuffixGroups(backbone, state, groups);
  const suffix = batchedSuffix(backbone, state, groups);
  let pooled: tf.Tensor2D;
  try {
    const depth = backbone.config.depth;
    let x = suffix.start();
    for (let i = state.split; i < depth; ) {
      // Blocks i..j−1 with nothing between them run as one native range.
      let j = i + 1;
      while (j < depth && suffix.quietAfter(j - 1)) j++;
      const input = x;
      suffix.read(i, input);
      const y = await native.blocks(i, j, input.dataSync() as Float32Array, input.shape[0]);
      x = suffix.add(j - 1, tf.tensor3d(y, input.shape));
      suffix.release(input);
      i = j;
    }
    const last = x;
    pooled = tf.tidy(() => pool(backbone, last));
  } finally {
    suffix.dispose();
  }
  try {
    return batchedHeads(pooled, groups);
  } finally {
    pooled.dispose();
  }
}

/** Prefix + suffix for one adapter on the backbone's engine: logits [n, classes]. */
export async function enginePredict(backbone: Backbone, adapter: Adapter, images: Float32Array[]): Promise<tf.Tensor2D> {
  const state = await enginePrefix(backbone, images, splitPoint(adapter.spec, backbone.config.depth));
  try {
    return (await engineSuffix(backbone, state, [{ adapter, rows: [...images.keys()] }]))[0];
  } finally {
    disposePrefix(state);
  }
}
