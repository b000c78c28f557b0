/**
 * A Swin Transformer (v1) from timm's layout, onto the same weights as the Hugging Face reader:
 * `patch_embed.proj` / `patch_embed.norm`, `layers.{s}.blocks.{b}.norm1`, `.attn.qkv` (q, k, v
 * stacked on the output axis), `.attn.relative_position_bias_table`, `.attn.proj`, `.norm2`,
 * `.mlp.fc1`, `.mlp.fc2`, final `norm`; the patch merging either at the end of stage s
 * (`layers.{s}.downsample`: the original Microsoft code, timm < 0.9 and the authors' DTL code)
 * or at the start of stage s+1 (`layers.{s+1}.downsample`: timm ≥ 0.9, whose checkpoints name
 * their classifier `head.fc`). Stages, widths, heads and the MLP ratio come from the tensor
 * shapes; the input size and normalisation from timm's config.json (`pretrained_cfg`, else
 * `model_args.img_size`, else the `_224` / `_384` suffix of the architecture name).
 */
import { z } from 'zod';
import { AppError, describeZodError } from '../errors.js';
import type { BackboneConfig, ResampleFilter } from './backbone-config.js';
import { timmBlock, type CanonicalBlock } from './backbone-layouts.js';
import type { SafetensorsTensor } from './safetensors.js';
import type { SwinCanonical } from './swin-backbone.js';
import { IMAGENET_MEAN, IMAGENET_STD, swinArch, swinBackboneConfig } from './swin-config.js';

type Tensors = Map<string, SafetensorsTensor>;

const fail = (msg: string): never => {
  throw new AppError('invalid_backbone', msg);
};
const shapeStr = (s: number[]) => `[${s.join(', ')}]`;

const posInt = z.number().int().positive();
const triple = z.tuple([z.number().finite(), z.number().finite(), z.number().finite()]);
const timmSwinSchema = z.object({
  architecture: z.string(),
  pretrained_cfg: z
    .object({ input_size: z.tuple([z.literal(3), posInt, posInt]).optional(), mean: triple.optional(), std: triple.optional(), interpolation: z.string().optional() })
    .loose()
    .optional(),
  model_args: z.object({ img_size: posInt.optional(), window_size: posInt.optional() }).loose().optional(),
});

const RESAMPLE: Record<string, ResampleFilter> = { nearest: 'nearest', bilinear: 'bilinear', bicubic: 'bicubic', lanczos: 'lanczos' };

export function isTimmSwin(tensors: Tensors): boolean {
  return tensors.has('patch_embed.proj.weight') && tensors.has('layers.0.blocks.0.norm1.weight');
}

export function readTimmSwin(tensors: Tensors, config: Record<string, unknown>): { config: BackboneConfig; weights: SwinCanonical } {
  const parsed = timmSwinSchema.safeParse(config);
  if (!parsed.success) fail(`config.json: ${describeZodError(parsed.error)}`);
  const c = parsed.data!;
  const shape = (name: string): number[] => tensors.get(name)?.shape ?? fail(`missing tensor '${name}'`);
  const [E, inChans, p] = shape('patch_embed.proj.weight');
  if (inChans !== 3) fail(`tensor 'patch_embed.proj.weight' has ${inChans} input channels, expected 3`);
  const depths: number[] = [];
  const heads: number[] = [];
  while (tensors.has(`layers.${depths.length}.blocks.0.norm1.weight`)) {
    const s = depths.length;
    let b = 0;
    while (tensors.has(`layers.${s}.blocks.${b}.norm1.weight`)) b++;
    depths.push(b);
    heads.push(shape(`layers.${s}.blocks.0.attn.relative_position_bias_table`)[1]);
  }
  const nameSize = /_(\d+)(\.|$)/.exec(c.architecture)?.[1];
  const imageSize = c.pretrained_cfg?.input_size?.[1] ?? c.model_args?.img_size ?? (nameSize ? Number(nameSize) : fail(`config.json: cannot tell the input size of '${c.architecture}' — set pretrained_cfg.input_size`));
  if (c.pretrained_cfg?.input_size && c.pretrained_cfg.input_size[1] !== c.pretrained_cfg.input_size[2]) fail('pretrained_cfg.input_size must be square');
  if (imageSize % p !== 0) fail(`image size ${imageSize} is not a multiple of patch size ${p}`);
  const firstTable = shape('layers.0.blocks.0.attn.relative_position_bias_table')[0];
  const windowSize = c.model_args?.window_size ?? Number(/window(\d+)/.exec(c.architecture)?.[1] ?? (Math.sqrt(firstTable) + 1) / 2);
  const swin = swinArch({
    embedDim: E,
    depths,
    heads,
    windowSize,
    mlpRatio: shape('layers.0.blocks.0.mlp.fc1.weight')[0] / E,
    grid: imageSize / p,
    absolutePosition: tensors.has('absolute_pos_embed'),
  });
  const cfg = swinBackboneConfig({
    layout: 'timm',
    swin,
    imageSize,
    patchSize: p,
    eps: 1e-5,
    qkvBias: tensors.has('layers.0.blocks.0.attn.qkv.bias'),
    mean: c.pretrained_cfg?.mean ?? IMAGENET_MEAN,
    std: c.pretrained_cfg?.std ?? IMAGENET_STD,
    ...(RESAMPLE[c.pretrained_cfg?.interpolation ?? ''] ? { resample: RESAMPLE[c.pretrained_cfg!.interpolation!] } : {}),
  });
  // Where the patch merging lives: after stage s (original) or before stage s+1 (timm ≥ 0.9).
  const mergeAtEnd = tensors.has('layers.0.downsample.reduction.weight');
  const used = new Set<string>();
  const g = (name: string, want: number[]): Float32Array => {
    const t = tensors.get(name);
    if (!t) fail(`missing tensor '${name}'`);
    if (t!.shape.length !== want.length || t!.shape.some((v, i) => v !== want[i])) fail(`tensor '${name}' has shape ${shapeStr(t!.shape)}, expected ${shapeStr(want)}`);
    used.add(name);
    return t!.data;
  };
  const blocks: CanonicalBlock[] = [];
  const biasTables: Float32Array[] = [];
  const merges: SwinCanonical['merges'] = [];
  let i = 0;
  depths.forEach((depth, s) => {
    const d = swin.stageWidths[s];
    const m = Math.floor(d * swin.mlpRatio);
    const zeros = new Float32Array(3 * d);
    for (let b = 0; b < depth; b++, i++) {
      const l = `layers.${s}.blocks.${b}.`;
      const ws = swin.blockWindow[i];
      biasTables.push(g(`${l}attn.relative_position_bias_table`, [(2 * ws - 1) ** 2, heads[s]]));
      blocks.push(timmBlock(g, l, d, m, cfg.qkvBias ? null : zeros));
    }
    if (s < depths.length - 1) {
      const l = `layers.${mergeAtEnd ? s : s + 1}.downsample.`;
      merges.push({ normG: g(`${l}norm.weight`, [4 * d]), normB: g(`${l}norm.bias`, [4 * d]), w: g(`${l}reduction.weight`, [2 * d, 4 * d]) });
    }
  });
  const weights: SwinCanonical = {
    patchW: g('patch_embed.proj.weight', [E, 3, p, p]),
    patchB: g('patch_embed.proj.bias', [E]),
    patchNormG: g('patch_embed.norm.weight', [E]),
    patchNormB: g('patch_embed.norm.bias', [E]),
    absPos: swin.absolutePosition ? g('absolute_pos_embed', [1, cfg.numPatches, E]) : null,
    blocks,
    biasTables,
    merges,
    normG: g('norm.weight', [cfg.width]),
    normB: g('norm.bias', [cfg.width]),
  };
  for (const name of tensors.keys()) {
    if (!used.has(name) && !/^head\./.test(name)) fail(`unexpected tensor '${name}': this Swin variant is not supported (Swin v1, timm layout)`);
  }
  return { config: cfg, weights };
}
