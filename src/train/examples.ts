/**
 * A prepared data set as the trainer sees it: which examples train, validate and test, and each
 * example's normalised pixels (optionally mirrored) at the backbone's size.
 */
import { AppError } from '../errors.js';
import type { BackboneConfig } from '../model/index.js';
import { SPLITS, type PreparedDataset } from './ingest/index.js';
import { stratifiedSplit } from './schedule.js';

const SPLIT_ID = Object.fromEntries(SPLITS.map((s, i) => [s, i])) as Record<(typeof SPLITS)[number], number>;

export interface SplitPlan {
  train: number[];
  val: number[];
  test: number[];
  /** 'split': the data set's own val split; 'held-out': a stratified share of the training images. */
  valSource: 'split' | 'held-out';
}

/**
 * Train = the 'train' and unassigned examples; test = the 'test' split (final metrics only);
 * val = the 'val' split when the data set has one, else a stratified `valFraction` of train.
 */
export function planSplits(ds: PreparedDataset, valFraction: number, seed: number): SplitPlan {
  const n = ds.labelIds.length;
  const pool: number[] = [];
  const val: number[] = [];
  const test: number[] = [];
  for (let i = 0; i < n; i++) {
    const s = ds.splits[i];
    if (s === SPLIT_ID.val) val.push(i);
    else if (s === SPLIT_ID.test) test.push(i);
    else pool.push(i);
  }
  let plan: SplitPlan;
  if (val.length > 0) plan = { train: pool, val, test, valSource: 'split' };
  else {
    const held = stratifiedSplit(pool, (i) => ds.labelIds[i], valFraction, seed);
    plan = { train: held.train, val: held.val, test, valSource: 'held-out' };
  }
  const classes = new Set(plan.train.map((i) => ds.labelIds[i]));
  if (classes.size < 2) {
    throw new AppError('invalid_dataset', `training needs images of at least 2 classes in the training split; found ${classes.size}`);
  }
  if (plan.val.length === 0) {
    throw new AppError('invalid_dataset', 'too few images to hold out a validation set (every class needs at least 2 training images, or give a val/ split)');
  }
  return plan;
}

/** Normalised pixels of one example: (v/255 − mean)/std per channel, HWC, mirrored left–right if `flip`. */
export function examplePixelsFn(ds: PreparedDataset, cfg: BackboneConfig): (index: number, flip: boolean) => Float32Array {
  if (ds.imageSize !== cfg.imageSize) {
    throw new AppError(
      'invalid_dataset',
      `the data set was prepared at ${ds.imageSize}×${ds.imageSize} but the backbone takes ${cfg.imageSize}×${cfg.imageSize}; upload it again`,
    );
  }
  // One lookup table per channel: the same arithmetic as model/preprocess.ts, done once per value.
  const lut = [0, 1, 2].map((c) => {
    const t = new Float32Array(256);
    const scale = 1 / (255 * cfg.std[c]);
    const shift = cfg.mean[c] / cfg.std[c];
    for (let v = 0; v < 256; v++) t[v] = v * scale - shift;
    return t;
  });
  const s = cfg.imageSize;
  const per = s * s * 3;
  return (index, flip) => {
    const src = ds.pixels.subarray(index * per, (index + 1) * per);
    const out = new Float32Array(per);
    for (let y = 0; y < s; y++) {
      for (let x = 0; x < s; x++) {
        const from = (y * s + (flip ? s - 1 - x : x)) * 3;
        const to = (y * s + x) * 3;
        out[to] = lut[0][src[from]];
        out[to + 1] = lut[1][src[from + 1]];
        out[to + 2] = lut[2][src[from + 2]];
      }
    }
    return out;
  };
}
