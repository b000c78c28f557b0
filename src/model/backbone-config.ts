/**
 * The backbone's architecture as the rest of the code sees it, derived from either public config
 * format (Hugging Face `config.json` + `preprocessor_config.json`, or timm's `config.json`).
 */
import { z } from 'zod';
import { AppError, describeZodError } from '../errors.js';

export type BackboneLayout = 'hf' | 'timm' | 'npz';

/**
 * A Swin Transformer's stages (swin-config.ts); set only for Swin backbones. Blocks are numbered
 * globally across stages, as the authors' DTL code numbers them.
 */
export interface SwinArch {
  embedDim: number;
  depths: number[];
  /** Attention heads per stage. */
  stageHeads: number[];
  /** Width per stage: embedDim · 2^s. */
  stageWidths: number[];
  /** Token grid side per stage: gridSize / 2^s. */
  stageGrids: number[];
  /** Per block: its stage, window side and cyclic shift (0 = W-MSA; shift and window clipped where the grid is no bigger than the window). */
  blockStage: number[];
  blockWindow: number[];
  blockShift: number[];
  windowSize: number;
  mlpRatio: number;
  /** Whether the checkpoint adds an absolute position embedding after the patch embedding. */
  absolutePosition: boolean;
}

export interface BackboneConfig {
  layout: BackboneLayout;
  /** Token width d. */
  width: number;
  /** Number of transformer blocks. */
  depth: number;
  heads: number;
  /** Hidden size of each block's MLP. */
  mlpDim: number;
  patchSize: number;
  /** Square input side in pixels. */
  imageSize: number;
  /** Patches per side (imageSize / patchSize). */
  gridSize: number;
  numPatches: number;
  /** numPatches + 1 (the cls token). */
  tokens: number;
  /** LayerNorm epsilon. */
  eps: number;
  mean: [number, number, number];
  std: [number, number, number];
  /** Whether the checkpoint has q/k/v biases (absent ones are zeros). */
  qkvBias: boolean;
  /** Set when run at another size than the checkpoint's (position embeddings resized, pos-embed.ts). */
  pretrainedImageSize?: number;
  /** The input size preprocessor_config.json asks for, when it names one. */
  preprocessorSize?: number;
  /** Resize filter the preprocessor config names (absent: the service's default, Lanczos-3). */
  resample?: ResampleFilter;
  /**
   * Set for a Swin Transformer. Then width/heads/mlpDim are the last stage's (width = the pooled
   * features, the head's input), depth counts every block, tokens = numPatches = the first
   * stage's token count (no cls token).
   */
  swin?: SwinArch;
}

export type ResampleFilter = 'nearest' | 'bilinear' | 'bicubic' | 'lanczos';

/** The sharp kernel for a preprocessor config's filter; Lanczos-3 (sharp's default) when it names none. */
export function sharpKernel(filter: ResampleFilter | undefined): 'nearest' | 'linear' | 'cubic' | 'lanczos3' {
  return filter === 'nearest' ? 'nearest' : filter === 'bilinear' ? 'linear' : filter === 'bicubic' ? 'cubic' : 'lanczos3';
}

/** PIL's resample codes, as Hugging Face image processors store them. */
const PIL_RESAMPLE: Record<number, ResampleFilter> = { 0: 'nearest', 1: 'lanczos', 2: 'bilinear', 3: 'bicubic', 4: 'bilinear', 5: 'bilinear' };

const fail = (msg: string): never => {
  throw new AppError('invalid_backbone', msg);
};

export function parseJson(bytes: Uint8Array, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    fail(`${what} is not valid JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(`${what} is not a JSON object`);
  return value as Record<string, unknown>;
}

const triple = z.tuple([z.number().finite(), z.number().finite(), z.number().finite()]);
const posInt = z.number().int().positive();
const side = z.union([posInt, z.tuple([posInt, posInt])]);

/** Defaults are transformers' ViTConfig defaults (ViT-B/16 @224), used when a key is omitted. */
const hfConfigSchema = z.object({
  hidden_size: posInt.default(768),
  num_hidden_layers: posInt.default(12),
  num_attention_heads: posInt.default(12),
  intermediate_size: posInt.default(3072),
  image_size: side.default(224),
  patch_size: side.default(16),
  num_channels: z.literal(3).default(3),
  layer_norm_eps: z.number().positive().default(1e-12),
  qkv_bias: z.boolean().default(true),
  hidden_act: z.enum(['gelu']).default('gelu'),
});

const preprocessorSchema = z.object({
  image_mean: triple.optional(),
  image_std: triple.optional(),
  do_resize: z.boolean().optional(),
  size: z.union([posInt, z.object({ height: posInt, width: posInt }), z.object({ shortest_edge: posInt })]).optional(),
  resample: z.number().int().min(0).max(5).optional(),
});

function squareSide(v: number | [number, number], what: string): number {
  if (typeof v === 'number') return v;
  if (v[0] !== v[1]) fail(`${what} must be square, got ${v[0]}×${v[1]}`);
  return v[0];
}

const describe = (err: z.ZodError): string => describeZodError(err);

function finish(c: Omit<BackboneConfig, 'gridSize' | 'numPatches' | 'tokens'>): BackboneConfig {
  if (c.imageSize % c.patchSize !== 0) fail(`image size ${c.imageSize} is not a multiple of patch size ${c.patchSize}`);
  if (c.width % c.heads !== 0) fail(`width ${c.width} is not divisible by ${c.heads} attention heads`);
  if (c.std.some((s) => s <= 0)) fail('image std values must be positive');
  const gridSize = c.imageSize / c.patchSize;
  return { ...c, gridSize, numPatches: gridSize * gridSize, tokens: gridSize * gridSize + 1 };
}

/** What preprocessor_config.json says: normalisation (default 0.5), the input size and the resize filter, when given. */
export function preprocessorSettings(preprocessor: Record<string, unknown> | undefined, defaults: { mean: [number, number, number]; std: [number, number, number] }): {
  mean: [number, number, number];
  std: [number, number, number];
  preprocessorSize?: number;
  resample?: ResampleFilter;
} {
  let { mean, std } = defaults;
  let preprocessorSize: number | undefined;
  let resample: ResampleFilter | undefined;
  if (preprocessor) {
    const p = preprocessorSchema.safeParse(preprocessor);
    if (!p.success) fail(`preprocessor_config.json: ${describe(p.error)}`);
    mean = p.data!.image_mean ?? mean;
    std = p.data!.image_std ?? std;
    const size = p.data!.size;
    if (p.data!.do_resize !== false && size !== undefined) {
      preprocessorSize = typeof size === 'number' ? size : 'shortest_edge' in size ? size.shortest_edge : squareSide([size.height, size.width], 'preprocessor_config.json size');
    }
    if (p.data!.resample !== undefined) resample = PIL_RESAMPLE[p.data!.resample];
  }
  return { mean, std, ...(preprocessorSize === undefined ? {} : { preprocessorSize }), ...(resample === undefined ? {} : { resample }) };
}

export function hfBackboneConfig(config: Record<string, unknown>, preprocessor?: Record<string, unknown>): BackboneConfig {
  const parsed = hfConfigSchema.safeParse(config);
  if (!parsed.success) fail(`config.json: ${describe(parsed.error)}`);
  const c = parsed.data!;
  const { mean, std, preprocessorSize, resample } = preprocessorSettings(preprocessor, { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] });
  return finish({
    layout: 'hf',
    width: c.hidden_size,
    depth: c.num_hidden_layers,
    heads: c.num_attention_heads,
    mlpDim: c.intermediate_size,
    patchSize: squareSide(c.patch_size, 'patch_size'),
    imageSize: squareSide(c.image_size, 'image_size'),
    eps: c.layer_norm_eps,
    mean,
    std,
    qkvBias: c.qkv_bias,
    ...(preprocessorSize === undefined ? {} : { preprocessorSize }),
    ...(resample === undefined ? {} : { resample }),
  });
}

const timmPretrainedSchema = z.object({
  input_size: z.tuple([z.literal(3), posInt, posInt]).optional(),
  mean: triple.optional(),
  std: triple.optional(),
  interpolation: z.string().optional(),
});
const timmConfigSchema = z.object({
  architecture: z.string().optional(),
  pretrained_cfg: timmPretrainedSchema.optional(),
  model_args: z
    .object({
      num_heads: posInt.optional(),
      img_size: side.optional(),
      qkv_bias: z.boolean().optional(),
    })
    .loose()
    .optional(),
});

/** Heads by timm architecture family, for configs without model_args.num_heads. */
const TIMM_HEADS: Array<[RegExp, number]> = [
  [/vit_tiny/, 3],
  [/vit_small/, 6],
  [/vit_base/, 12],
  [/vit_large/, 16],
  [/vit_huge/, 16],
];

const TIMM_RESAMPLE: Record<string, ResampleFilter> = { nearest: 'nearest', bilinear: 'bilinear', bicubic: 'bicubic', lanczos: 'lanczos' };

/** What timm's tensor shapes say; the loader measures these before calling. */
export interface TimmShapes {
  width: number;
  depth: number;
  tokens: number;
  patchSize: number;
  mlpDim: number;
  hasQkvBias: boolean;
}

export function timmBackboneConfig(config: Record<string, unknown>, shapes: TimmShapes): BackboneConfig {
  const parsed = timmConfigSchema.safeParse(config);
  if (!parsed.success) fail(`config.json: ${describe(parsed.error)}`);
  const c = parsed.data!;
  // Older timm configs keep the pretrained config at the top level.
  const pre = c.pretrained_cfg ?? timmPretrainedSchema.safeParse(config).data ?? {};
  let heads = c.model_args?.num_heads;
  if (heads === undefined) heads = TIMM_HEADS.find(([re]) => re.test(c.architecture ?? ''))?.[1];
  if (heads === undefined) {
    fail(`config.json: cannot tell the number of attention heads of '${c.architecture ?? '?'}' — set model_args.num_heads`);
  }
  const numPatches = shapes.tokens - 1;
  const grid = Math.round(Math.sqrt(numPatches));
  if (grid * grid !== numPatches) fail(`tensor 'pos_embed' has ${shapes.tokens} tokens, not 1 + a square number of patches`);
  let imageSize = grid * shapes.patchSize;
  const declared = pre.input_size
    ? squareSide([pre.input_size[1], pre.input_size[2]], 'pretrained_cfg.input_size')
    : c.model_args?.img_size !== undefined
      ? squareSide(c.model_args.img_size, 'model_args.img_size')
      : imageSize;
  if (declared !== imageSize) {
    fail(`config.json says ${declared}px input, but 'pos_embed' has a ${grid}×${grid} grid of ${shapes.patchSize}px patches (${imageSize}px)`);
  }
  imageSize = declared;
  if (c.model_args?.qkv_bias === true && !shapes.hasQkvBias) fail("missing tensor 'blocks.0.attn.qkv.bias'");
  return finish({
    layout: 'timm',
    width: shapes.width,
    depth: shapes.depth,
    heads: heads!,
    mlpDim: shapes.mlpDim,
    patchSize: shapes.patchSize,
    imageSize,
    eps: 1e-6,
    mean: pre.mean ?? [0.5, 0.5, 0.5],
    std: pre.std ?? [0.5, 0.5, 0.5],
    qkvBias: shapes.hasQkvBias,
    ...(TIMM_RESAMPLE[pre.interpolation ?? ''] === undefined ? {} : { resample: TIMM_RESAMPLE[pre.interpolation!] }),
  });
}

/**
 * [tokens, width] of block i's input and output (i = −1: the embedding's output): fixed on a
 * ViT; on a Swin the stage's grid² × width (a block that opens a stage reads the merged tokens).
 * Callers that lay prefix activations out per block (prefix caches) size them with this.
 */
export function blockShape(cfg: BackboneConfig, i: number): [number, number] {
  const a = cfg.swin;
  if (!a) return [cfg.tokens, cfg.width];
  const s = i < 0 ? 0 : a.blockStage[i];
  return [a.stageGrids[s] ** 2, a.stageWidths[s]];
}
