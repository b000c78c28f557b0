/**
 * The DTL forward pass, cut where the service needs it:
 *
 *   prefix  — blocks 0..M−1 (M = first addition + 1), shared by every adapter: prefix.ts.
 *   suffix  — blocks M..N−1 on the whole batch at once, while each group of rows uses its own
 *             adapter's reads, additions (and DTL+ fusion) and head: one batch, many tenants.
 *             One adapter: its stages (suffix.ts); several: every row through each stage
 *             together, a fixed number of ops per block (forward-batched.ts; a Swin's:
 *             swin-batched.ts).
 *
 * Both work under a gradient tape (training) as well as outside (serving).
 */
import * as tf from '@tensorflow/tfjs';
import type { Adapter } from './adapter.js';
import type { Backbone } from './backbone.js';
import { batchedHeads, batchedSuffixPooled, splitByGroup } from './forward-batched.js';
import { linear, pool } from './layers.js';
import { disposePrefix, runPrefix, splitPoint, type PrefixState } from './prefix.js';
import { adapterPooled, checkSuffixGroups, type SuffixGroup } from './suffix.js';
import { swinBatchedPooled } from './swin-batched.js';

/**
 * Pooled features (input of each head) per group: the additions after block split−1 (the last
 * prefix block) first, then blocks state.split..depth−1, each group's reads and additions with
 * its own adapter. The caller owns the results.
 */
export function suffixFeatures(backbone: Backbone, state: PrefixState, groups: SuffixGroup[]): tf.Tensor2D[] {
  checkSuffixGroups(backbone, state, groups);
  if (groups.length === 1) return [adapterPooled(backbone, groups[0], state)];
  const pooled = backbone.swin ? swinBatchedPooled(backbone, state, groups) : batchedSuffixPooled(backbone, state, groups);
  try {
    return tf.tidy(() => splitByGroup(pooled, groups)).map((t) => tf.keep(t));
  } finally {
    pooled.dispose();
  }
}

/** Logits per group ([rows, classes] each, in the group's row order and its adapter's label order). */
export function forwardSuffix(backbone: Backbone, state: PrefixState, groups: SuffixGroup[]): tf.Tensor2D[] {
  checkSuffixGroups(backbone, state, groups);
  if (groups.length === 1) {
    const { adapter } = groups[0];
    const features = adapterPooled(backbone, groups[0], state);
    try {
      return [tf.keep(tf.tidy(() => linear(features, adapter.headW, adapter.headB)))];
    } finally {
      features.dispose();
    }
  }
  const pooled = backbone.swin ? swinBatchedPooled(backbone, state, groups) : batchedSuffixPooled(backbone, state, groups);
  try {
    return batchedHeads(pooled, groups);
  } finally {
    pooled.dispose();
  }
}

/** Prefix + suffix for one adapter on a batch of preprocessed images [n, S, S, 3]. */
export function predictLogits(backbone: Backbone, adapter: Adapter, pixels: tf.Tensor4D): tf.Tensor2D {
  const state = runPrefix(backbone, pixels, splitPoint(adapter.spec, backbone.config.depth));
  try {
    return forwardSuffix(backbone, state, [{ adapter, rows: [...Array(pixels.shape[0]).keys()] }])[0];
  } finally {
    disposePrefix(state);
  }
}

/** The frozen backbone's own pooled features (no adapter): the reference an untrained adapter must reproduce. */
export function backboneFeatures(backbone: Backbone, pixels: tf.Tensor4D): tf.Tensor2D {
  const state = runPrefix(backbone, pixels, backbone.config.depth);
  try {
    return tf.keep(tf.tidy(() => pool(backbone, state.x)));
  } finally {
    disposePrefix(state);
  }
}
