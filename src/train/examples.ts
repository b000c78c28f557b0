/**
 * A prepared data set as the trainer sees it: which examples train, validate and test, and each
 * example's normalised pixels (optionally mirrored or shifted: an augmentation view) at the
 * backbone's size.
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
  /**
   * 'split': the data set's own val split; 'held-out': a stratified share of the training images;
   * 'none': too few images to hold any out (fewer than MIN_HELD_OUT_VAL would be) — every image
   * trains, no epoch is chosen by validation and no temperature is fitted.
   */
  valSource: 'split' | 'held-out' | 'none';
}

/**
 * The smallest held-out validation set worth its images: below it (2 classes × 5 images holds out
 * 2) a validation accuracy moves in steps of 25 % or more, picks epochs by noise and reads as a
 * meaningless 100 %; those images train instead.
 */
export const MIN_HELD_OUT_VAL = 4;

/**
 * Train = the 'train' and unassigned examples; test = the 'test' split (final metrics only);
 * val = the 'val' split when the data set has one, else a stratified `valFraction` of train, else
 * (too few images for MIN_HELD_OUT_VAL) none.
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
    plan = held.val.length >= MIN_HELD_OUT_VAL
      ? { train: held.train, val: held.val, test, valSource: 'held-out' }
      : { train: pool, val: [], test, valSource: 'none' };
  }
  const classes = new Set(plan.train.map((i) => ds.labelIds[i]));
  if (classes.size < 2) {
    throw new AppError('invalid_dataset', `training needs images of at least 2 classes in the training split; found ${classes.size}`);
  }
  return plan;
}

/** One augmentation view of an image: mirrored left–right, then moved by (dx, dy) pixels. */
export interface View {
  flip: boolean;
  dx: number;
  dy: number;
}

const IDENTITY: View = { flip: false, dx: 0, dy: 0 };

/**
 * The views an augmentation mode trains on, the identity first (validation and test use it). Each
 * is a separate row of the prefix cache, so a mode with V views costs V× the cache memory and
 * V× the prefix computations of the first epochs; a batch picks one view per image at random.
 * 'shift' moves by about 7 % of the side (2 px at 28) in the four directions: small enough to keep
 * what is in the picture, enough that the adapter stops keying on exact positions, which is what
 * fails on images drawn a little differently (another font, another hand).
 */
export function augmentViews(mode: 'none' | 'flip' | 'shift', imageSize: number): View[] {
  if (mode === 'flip') return [IDENTITY, { flip: true, dx: 0, dy: 0 }];
  if (mode === 'shift') {
    const d = Math.max(1, Math.round(imageSize * 0.07));
    return [IDENTITY, { flip: false, dx: d, dy: 0 }, { flip: false, dx: -d, dy: 0 }, { flip: false, dx: 0, dy: d }, { flip: false, dx: 0, dy: -d }];
  }
  return [IDENTITY];
}

/**
 * Normalised pixels of one example: (v/255 − mean)/std per channel, HWC, in `view` (default: as
 * it is). A shift repeats the edge pixels into the uncovered border, so no artificial black bar
 * appears on a white background.
 */
export function examplePixelsFn(ds: PreparedDataset, cfg: BackboneConfig): (index: number, view?: View) => Float32Array {
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
  const clamp = (v: number) => (v < 0 ? 0 : v >= s ? s - 1 : v);
  return (index, view = IDENTITY) => {
    const src = ds.pixels.subarray(index * per, (index + 1) * per);
    const out = new Float32Array(per);
    for (let y = 0; y < s; y++) {
      const sy = clamp(y - view.dy);
      for (let x = 0; x < s; x++) {
        const sx = clamp(x - view.dx);
        const from = (sy * s + (view.flip ? s - 1 - sx : sx)) * 3;
        const to = (y * s + x) * 3;
        out[to] = lut[0][src[from]];
        out[to + 1] = lut[1][src[from + 1]];
        out[to + 2] = lut[2][src[from + 2]];
      }
    }
    return out;
  };
}
