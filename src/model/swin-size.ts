/**
 * Running a Swin at another input size, once at load, with Hugging Face `SwinModel`'s semantics
 * (followed for both layouts): the stage grids follow the new patch grid (an odd grid is padded
 * by one before a patch merging); each block keeps the window and shift it had at the pretraining
 * size unless its stage's grid is no bigger than that window, when the window becomes the grid
 * and the shift 0 (`set_shift_and_window_size`); grids that are not whole windows are padded
 * inside the attention (`maybe_pad`, swin-layers.ts). The relative position bias table belongs to
 * the window, so it is unchanged, except where a stage's grid shrinks below the window it was
 * pretrained with: there Hugging Face raises a shape error and timm (≥ 1.0, `set_input_size`)
 * interpolates the table to the new window; here the smaller window reads the table's entries
 * for the offsets it has (|dy|, |dx| < the new window), which keeps every bias an offset had in
 * pretraining. Absolute position embeddings (use_absolute_embeddings / timm's `ape`) are resized
 * on the patch grid as a ViT's are (pos-embed.ts: bicubic, antialiased for timm).
 */
import { createHash } from 'node:crypto';
import { AppError } from '../errors.js';
import type { BackboneConfig } from './backbone-config.js';
import { resizePosEmbed } from './pos-embed.js';
import type { SwinCanonical } from './swin-backbone.js';
import { placeWindows, swinBackboneConfig } from './swin-config.js';

/** The entries of a (2·from − 1)² relative position table [rows, heads] a to×to window uses. */
export function cropBiasTable(table: Float32Array, heads: number, from: number, to: number): Float32Array {
  if (to === from) return table;
  const side = 2 * from - 1;
  const out = new Float32Array((2 * to - 1) ** 2 * heads);
  let k = 0;
  for (let dy = -(to - 1); dy <= to - 1; dy++) {
    for (let dx = -(to - 1); dx <= to - 1; dx++) {
      const row = (dy + from - 1) * side + (dx + from - 1);
      out.set(table.subarray(row * heads, (row + 1) * heads), k);
      k += heads;
    }
  }
  return out;
}

/** The config of the same Swin run at `imageSize` (a positive multiple of its patch size). */
export function swinConfigAtSize(cfg: BackboneConfig, imageSize: number): BackboneConfig {
  const a = cfg.swin!;
  if (!Number.isInteger(imageSize) || imageSize < cfg.patchSize || imageSize % cfg.patchSize !== 0) {
    throw new AppError('config_invalid', `cannot run the Swin at ${imageSize}px: the size must be a positive multiple of its ${cfg.patchSize}px patches`);
  }
  const swin = placeWindows(a, imageSize / cfg.patchSize, a.blockWindow, a.blockShift);
  return {
    ...swinBackboneConfig({ ...cfg, swin, imageSize }),
    pretrainedImageSize: cfg.pretrainedImageSize ?? cfg.imageSize,
  };
}

/**
 * The Swin at `imageSize` (its own when undefined or equal): config, bias tables cut to any
 * smaller window, absolute position embeddings resized, and an identity that differs from the
 * checkpoint's (prefix caches and adapters' backbone checks follow it).
 */
export function swinAtImageSize(
  loaded: { config: BackboneConfig; weights: SwinCanonical; identity: string },
  imageSize: number | undefined,
): { config: BackboneConfig; weights: SwinCanonical; identity: string } {
  const { config, weights, identity } = loaded;
  if (imageSize === undefined || imageSize === config.imageSize) return loaded;
  const sized = swinConfigAtSize(config, imageSize);
  const from = config.swin!;
  const to = sized.swin!;
  const E = from.embedDim;
  let absPos = weights.absPos;
  if (absPos) {
    // pos-embed.ts resizes [1 + g², E] with a cls row first; a Swin has none, so one is lent and dropped.
    const withCls = new Float32Array(absPos.length + E);
    withCls.set(absPos, E);
    absPos = resizePosEmbed(withCls, E, config.gridSize, sized.gridSize, config.layout === 'hf' ? 'hf' : 'timm').slice(E);
  }
  return {
    config: sized,
    weights: {
      ...weights,
      absPos,
      biasTables: weights.biasTables.map((t, i) => cropBiasTable(t, from.stageHeads[from.blockStage[i]], from.blockWindow[i], to.blockWindow[i])),
    },
    identity: createHash('sha256').update(`${identity}@${imageSize}px`).digest('hex'),
  };
}
