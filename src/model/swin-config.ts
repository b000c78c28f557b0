/**
 * A Swin Transformer's architecture from Hugging Face's SwinConfig (`config.json` with
 * `model_type: "swin"`) and its preprocessor config: the stages, and each block's window and
 * shift as both the Hugging Face and the original (timm-based, the authors') code set them.
 */
import { z } from 'zod';
import { AppError, describeZodError } from '../errors.js';
import { preprocessorSettings, type BackboneConfig, type BackboneLayout, type ResampleFilter, type SwinArch } from './backbone-config.js';

const fail = (msg: string): never => {
  throw new AppError('invalid_backbone', msg);
};

const posInt = z.number().int().positive();
const side = z.union([posInt, z.tuple([posInt, posInt])]);

/** Defaults are transformers' SwinConfig defaults (Swin-T @224). */
const swinConfigSchema = z.object({
  model_type: z.literal('swin'),
  image_size: side.default(224),
  patch_size: side.default(4),
  num_channels: z.literal(3).default(3),
  embed_dim: posInt.default(96),
  depths: z.array(posInt).min(1).default([2, 2, 6, 2]),
  num_heads: z.array(posInt).min(1).default([3, 6, 12, 24]),
  window_size: posInt.default(7),
  mlp_ratio: z.number().positive().default(4),
  qkv_bias: z.boolean().default(true),
  hidden_act: z.enum(['gelu']).default('gelu'),
  use_absolute_embeddings: z.boolean().default(false),
  layer_norm_eps: z.number().positive().default(1e-5),
});

/** ImageNet's mean/std: what the Swin checkpoints were trained with, used when no preprocessor config says otherwise. */
export const IMAGENET_MEAN: [number, number, number] = [0.485, 0.456, 0.406];
export const IMAGENET_STD: [number, number, number] = [0.229, 0.224, 0.225];

function square(v: number | [number, number], what: string): number {
  if (typeof v === 'number') return v;
  if (v[0] !== v[1]) fail(`${what} must be square, got ${v[0]}×${v[1]}`);
  return v[0];
}

/** A Hugging Face SwinConfig (`model_type: "swin"`) or a timm Swin v1 config (`architecture: "swin_…"`). */
export function isSwinConfig(config: Record<string, unknown>): boolean {
  return config.model_type === 'swin' || (typeof config.architecture === 'string' && /^swin_/.test(config.architecture));
}

/** The stages, windows and shifts of a Swin with these hyperparameters at this input grid (its pretraining grid). */
export function swinArch(a: { embedDim: number; depths: number[]; heads: number[]; windowSize: number; mlpRatio: number; grid: number; absolutePosition: boolean }): SwinArch {
  if (a.heads.length !== a.depths.length) fail(`config.json: ${a.depths.length} stages in 'depths' but ${a.heads.length} in 'num_heads'`);
  const stageWidths = a.depths.map((_, s) => a.embedDim * 2 ** s);
  a.depths.forEach((_, s) => {
    if (stageWidths[s] % a.heads[s] !== 0) fail(`stage ${s}: width ${stageWidths[s]} is not divisible by ${a.heads[s]} heads`);
  });
  // At the pretraining grid every block starts from the configured window, shifted by half of it on odd blocks.
  const windows = a.depths.flatMap((depth) => Array.from({ length: depth }, () => a.windowSize));
  const shifts = a.depths.flatMap((depth) => Array.from({ length: depth }, (_, b) => (b % 2 === 0 ? 0 : Math.floor(a.windowSize / 2))));
  return placeWindows({
    embedDim: a.embedDim,
    depths: [...a.depths],
    stageHeads: [...a.heads],
    stageWidths,
    windowSize: a.windowSize,
    mlpRatio: a.mlpRatio,
    absolutePosition: a.absolutePosition,
  }, a.grid, windows, shifts);
}

/**
 * Stage grids, windows and shifts at patch grid `grid`, from each block's window and shift so far,
 * as Hugging Face's SwinLayer.set_shift_and_window_size does: a stage whose grid is no bigger than
 * the block's window is one window of that grid, never shifted; otherwise the window and shift
 * stay and the grid is padded to whole windows inside the attention (swin-layers.ts). A patch
 * merging of an odd grid pads it by one (HF SwinPatchMerging.maybe_pad), so grids are ⌈g/2⌉.
 */
export function placeWindows(base: Omit<SwinArch, 'stageGrids' | 'blockStage' | 'blockWindow' | 'blockShift'>, grid: number, windows: number[], shifts: number[]): SwinArch {
  if (!Number.isInteger(grid) || grid < 1) fail(`a Swin needs a whole patch grid, got ${grid}`);
  const stageGrids: number[] = [];
  const blockStage: number[] = [];
  const blockWindow: number[] = [];
  const blockShift: number[] = [];
  let g = grid;
  let i = 0;
  base.depths.forEach((depth, s) => {
    if (s > 0) g = Math.ceil(g / 2);
    stageGrids.push(g);
    for (let b = 0; b < depth; b++, i++) {
      blockStage.push(s);
      blockWindow.push(g <= windows[i] ? g : windows[i]);
      blockShift.push(g <= windows[i] ? 0 : shifts[i]);
    }
  });
  return { ...base, depths: [...base.depths], stageHeads: [...base.stageHeads], stageWidths: [...base.stageWidths], stageGrids, blockStage, blockWindow, blockShift };
}

/** A stage's grid padded to whole windows of block i (equal to the grid when it divides). */
export function paddedGrid(a: SwinArch, i: number): number {
  const g = a.stageGrids[a.blockStage[i]];
  const w = a.blockWindow[i];
  return Math.ceil(g / w) * w;
}

/** BackboneConfig of a Hugging Face Swin checkpoint. */
export function hfSwinConfig(config: Record<string, unknown>, preprocessor?: Record<string, unknown>): BackboneConfig {
  const parsed = swinConfigSchema.safeParse(config);
  if (!parsed.success) fail(`config.json: ${describeZodError(parsed.error)}`);
  const c = parsed.data!;
  const imageSize = square(c.image_size, 'image_size');
  const patchSize = square(c.patch_size, 'patch_size');
  if (imageSize % patchSize !== 0) fail(`image size ${imageSize} is not a multiple of patch size ${patchSize}`);
  const grid = imageSize / patchSize;
  const swin = swinArch({
    embedDim: c.embed_dim,
    depths: c.depths,
    heads: c.num_heads,
    windowSize: c.window_size,
    mlpRatio: c.mlp_ratio,
    grid,
    absolutePosition: c.use_absolute_embeddings,
  });
  const pre = preprocessorSettings(preprocessor, { mean: IMAGENET_MEAN, std: IMAGENET_STD });
  return swinBackboneConfig({ layout: 'hf', swin, imageSize, patchSize, eps: c.layer_norm_eps, qkvBias: c.qkv_bias, ...pre });
}

/** The BackboneConfig of a Swin whose stages are known (either layout). */
export function swinBackboneConfig(c: {
  layout: BackboneLayout;
  swin: SwinArch;
  imageSize: number;
  patchSize: number;
  eps: number;
  qkvBias: boolean;
  mean: [number, number, number];
  std: [number, number, number];
  preprocessorSize?: number;
  resample?: ResampleFilter;
}): BackboneConfig {
  if (c.std.some((s) => s <= 0)) fail('image std values must be positive');
  const last = c.swin.depths.length - 1;
  const width = c.swin.stageWidths[last];
  const grid = c.imageSize / c.patchSize;
  return {
    layout: c.layout,
    width,
    depth: c.swin.blockStage.length,
    heads: c.swin.stageHeads[last],
    mlpDim: Math.floor(width * c.swin.mlpRatio),
    patchSize: c.patchSize,
    imageSize: c.imageSize,
    gridSize: grid,
    numPatches: grid * grid,
    tokens: grid * grid,
    eps: c.eps,
    mean: c.mean,
    std: c.std,
    qkvBias: c.qkvBias,
    ...(c.preprocessorSize === undefined ? {} : { preprocessorSize: c.preprocessorSize }),
    ...(c.resample === undefined ? {} : { resample: c.resample }),
    swin: c.swin,
  };
}
