/**
 * Training hyperparameters: one zod schema with bounds, the authors' recipe as defaults
 * (AdamW lr 1e-3, weight decay 0.05 without decay on biases, warm-up then cosine per epoch,
 * batch 32, rank 2, β 100, every block read, additions after the second half of the blocks),
 * and the step that turns them into a concrete adapter spec for one backbone. On a Swin the
 * defaults follow the authors' Swin-B scripts instead (swinDefaultReads, swinAutoRank).
 *
 * Epochs: `warmupEpochs` of linear ramp, then `epochs` of cosine decay (the paper's VTAB-1K runs
 * are warmupEpochs 10 + epochs 100). The defaults here are smaller, sized for a service that
 * trains on CPUs; early stopping (`patience`) ends runs that stopped improving.
 */
import { z } from 'zod';
import { AppError, validationError } from '../errors.js';
import { blockShape, type AdapterSpec, type BackboneConfig } from '../model/index.js';

/** The largest learning rate of every search grid (search.ts BUDGETS). */
export const AUTO_LR_MAX = 0.3;

const blockList = z
  .array(z.number().int().min(0).max(1023))
  .min(1)
  .max(1024)
  .refine((a) => new Set(a).size === a.length, 'block indices must be unique');

export const hyperparametersSchema = z
  .object({
    /** Cosine epochs after the warm-up. */
    epochs: z.number().int().min(1).max(1000).default(20),
    /** Linear warm-up epochs before the cosine decay. */
    warmupEpochs: z.number().int().min(0).max(100).default(2),
    /**
     * Peak learning rate (reached at the end of the warm-up). 'auto' (default): chosen by the
     * recipe search on the validation split (search.ts); a number skips the search on this axis.
     */
    lr: z.union([z.literal('auto'), z.number().positive().max(1)]).default('auto'),
    /** Learning rate at the end of the cosine. */
    minLr: z.number().min(0).max(1).default(1e-8),
    /** AdamW decoupled weight decay; biases get none. */
    weightDecay: z.number().min(0).max(1).default(0.05),
    batchSize: z.number().int().min(1).max(512).default(32),
    /**
     * CSN rank r. 'auto' (default): autoRank — the authors' 2 on ViT-B's width 768, more on
     * narrower backbones (up to a quarter of the width) so the side network keeps about the same
     * size per block; on a Swin swinAutoRank (the authors' 4 on Swin-B), sized to the narrowest
     * read block.
     */
    rank: z.union([z.literal('auto'), z.number().int().min(1).max(64)]).default('auto'),
    /** Swish sharpness β in θ(h) = h·sigmoid(βh). */
    beta: z.number().positive().max(10_000).default(100),
    /** Blocks whose input the CSN reads ('all' = every block; on a Swin every block of the stages that add, swinDefaultReads). */
    readBlocks: z.union([z.literal('all'), blockList]).default('all'),
    /** Blocks after which θ(h) is added back ('default' = the second half of the blocks). */
    addBlocks: z.union([z.literal('default'), blockList]).default('default'),
    /**
     * 'dtl+' fuses the addition with a depthwise kernel×kernel conv over the patch grid. 'auto'
     * (default): both are searched (dtl+ only where the kernel fits the patch grid).
     */
    variant: z.enum(['auto', 'dtl', 'dtl+']).default('auto'),
    /** Width of the recipe search when lr or variant is 'auto': more candidates for more time. */
    budget: z.enum(['fast', 'balanced', 'best']).default('balanced'),
    kernel: z.number().int().min(1).max(15).default(3),
    /** Seeds the adapter's initialisation, the train/val split, batch order and augmentation. */
    seed: z.number().int().min(0).max(0xffff_ffff).default(0),
    /** Stop after this many epochs (after the warm-up) without a better validation accuracy; 0 = never. */
    patience: z.number().int().min(0).max(1000).default(5),
    /** Share of each class held out for validation when the data set has no val split. */
    valFraction: z.number().min(0.05).max(0.5).default(0.2),
    /**
     * 'balanced': each class's loss weight is N / (C · n_c) over the training split, so a minority
     * class counts as much as a majority one (exactly 1 for every class of a balanced set);
     * 'none': plain cross-entropy.
     */
    classWeights: z.enum(['balanced', 'none']).default('balanced'),
    /**
     * 'flip': random horizontal flips; 'shift': random moves of ~7 % of the side in four
     * directions. Every view's prefix is cached (flip 2×, shift 5× the cache memory).
     */
    augment: z.enum(['none', 'flip', 'shift']).default('none'),
    /**
     * Activation checkpointing: the last `tapeBlocks` blocks keep their activations on the
     * gradient tape; earlier suffix blocks are re-run one at a time in the backward pass. Fewer =
     * less step memory, more time. Unset: a quarter of the backbone's blocks (defaultTapeBlocks);
     * 0 recomputes every suffix block; a number ≥ the suffix length recomputes none.
     */
    tapeBlocks: z.number().int().min(0).max(1024).optional(),
  })
  .strict()
  .refine((h) => h.lr === 'auto' || h.minLr <= h.lr, { message: 'minLr must not exceed lr', path: ['minLr'] })
  // The search leaves out rates below minLr (their cosine would run upwards); none left = an empty grid.
  .refine((h) => h.lr !== 'auto' || h.minLr <= AUTO_LR_MAX, {
    message: `with lr 'auto', minLr must not exceed ${AUTO_LR_MAX} (the largest rate searched): no learning rate would be left to search`,
    path: ['minLr'],
  });

export type Hyperparameters = z.infer<typeof hyperparametersSchema>;
export type HyperparametersInput = z.input<typeof hyperparametersSchema>;
/** One concrete recipe: what a single training run (and a published version) uses. */
export type Recipe = Omit<Hyperparameters, 'lr' | 'variant' | 'rank'> & { lr: number; variant: 'dtl' | 'dtl+'; rank: number };

/**
 * The rank 'auto' resolves to: r·d ≈ 1,536 — the authors' rank 2 at ViT-B's width 768, so their
 * CSN size per read (2·r·d weights) is kept at any width — between 2 and d/4. On the bundled
 * backbone (d = 64) that is 16. Measured on the study's letters task (docs/eval.md), no
 * hyperparameters otherwise: rank 2 69.3 %, rank 8 71.3 %, rank 16 77.2 % (pixel logistic
 * regression 71.5 %); a rank-2 CSN is 3 % of a 64-wide block.
 */
export function autoRank(width: number): number {
  return Math.max(2, Math.min(Math.round(1536 / width), Math.floor(width / 4)));
}

/**
 * The rank 'auto' resolves to on a Swin, from the narrowest read block's width: r·d ≈ 2,048 —
 * the authors' rank 4 on Swin-B (`--r 4` in every Swin script of heekhero/DTL), whose narrowest
 * read block (stage 2) is 512 wide — between 2 and d/4, so it fits every read block.
 */
export function swinAutoRank(narrowestReadWidth: number): number {
  return Math.max(2, Math.min(Math.round(2048 / narrowestReadWidth), Math.floor(narrowestReadWidth / 4)));
}

/**
 * 'all' reads on a Swin: every block of every stage that holds an addition. The CSN's accumulator
 * restarts at each stage (the width changes), so a read in a stage without an addition trains
 * nothing and would only cost prefix-store memory (stage 0 has the most tokens). With the default
 * additions on Swin-B (2+2+18+2 blocks, additions 12..23) that is 4..23, the authors' reads.
 */
export function swinDefaultReads(cfg: BackboneConfig, adds: readonly number[]): number[] {
  const stage = cfg.swin!.blockStage;
  const addStages = new Set(adds.map((i) => stage[i]));
  return Array.from({ length: cfg.depth }, (_, i) => i).filter((i) => addStages.has(stage[i]));
}

/** Parses client input (unknown keys refused); a bad value → AppError 'validation_failed' naming the field. */
export function parseHyperparameters(input: unknown): Hyperparameters {
  const parsed = hyperparametersSchema.safeParse(input ?? {});
  if (!parsed.success) throw validationError(parsed.error, { context: 'invalid hyperparameters' });
  return parsed.data;
}

/**
 * Default of `tapeBlocks`: a quarter of the backbone's blocks (3 of ViT-B's 12). Measured on a
 * 12-block ViT at the authors' split (bench P3): the step's peak tensor memory is 0.29 of the same
 * step with the tape over all blocks (0.47 with the whole suffix taped, 0.13 recomputing every
 * block) for ≈ 1.15× the time of the fully taped step. On wasm, whose heap stops at 4 GiB, this is
 * what lets ViT-B-sized backbones train at batch 32.
 */
export function defaultTapeBlocks(depth: number): number {
  return Math.floor(depth / 4);
}

/**
 * The default addition blocks: the second half of the blocks (ViT-B's 12 → 6..11, as the authors;
 * on Swin-B 12..23, where the authors' scripts add after 14..23 — the same stages).
 */
export function defaultAddBlocks(depth: number): number[] {
  const from = Math.floor(depth / 2);
  return Array.from({ length: depth - from }, (_, i) => from + i);
}

/** Adapter blocks and kernel once 'all' / 'default' are resolved against a backbone. */
export interface ResolvedBlocks {
  loraBeforeBlocks: number[];
  addAfterBlocks: number[];
  fusionKernel: number;
}

/**
 * Resolves the block lists against a backbone and checks them: every index inside the backbone,
 * rank at most the width, the DTL+ kernel at most the patch grid. → 'validation_failed'.
 */
export function resolveBlocks(h: Hyperparameters, cfg: BackboneConfig): ResolvedBlocks {
  // 'auto' is checked as plain DTL: the search drops dtl+ where its kernel does not fit the grid.
  const fail = (msg: string): never => {
    throw new AppError('validation_failed', `invalid hyperparameters: ${msg}`);
  };
  const adds = h.addBlocks === 'default' ? defaultAddBlocks(cfg.depth) : [...h.addBlocks].sort((a, b) => a - b);
  const every = (): number[] => Array.from({ length: cfg.depth }, (_, i) => i);
  // On a Swin, explicit additions are checked below; an index out of range must not reach swinDefaultReads.
  const swinAll = (): number[] => (adds.every((i) => i < cfg.depth) ? swinDefaultReads(cfg, adds) : every());
  const reads = h.readBlocks === 'all' ? (cfg.swin ? swinAll() : every()) : [...h.readBlocks].sort((a, b) => a - b);
  for (const [list, name] of [
    [reads, 'readBlocks'],
    [adds, 'addBlocks'],
  ] as const) {
    const bad = list.find((i) => i >= cfg.depth);
    if (bad !== undefined) fail(`${name} names block ${bad}, but the backbone has ${cfg.depth} blocks (0..${cfg.depth - 1})`);
  }
  // A read after the last addition can never reach the output: it would train nothing.
  if (reads[0] > adds[adds.length - 1]) fail(`every read block comes after the last addition block ${adds[adds.length - 1]}`);
  if (h.rank !== 'auto' && !cfg.swin && h.rank > cfg.width) fail(`rank ${h.rank} exceeds the backbone width ${cfg.width}`);
  // A Swin's read blocks have their stage's width: the rank must fit the narrowest one.
  const narrow = cfg.swin && h.rank !== 'auto' ? reads.find((i) => (h.rank as number) > blockShape(cfg, i)[1]) : undefined;
  if (narrow !== undefined) fail(`rank ${h.rank} exceeds read block ${narrow}'s width ${blockShape(cfg, narrow)[1]}`);
  const fusionKernel = h.variant === 'dtl+' ? h.kernel : 0;
  if (fusionKernel > cfg.gridSize) fail(`kernel ${fusionKernel} exceeds the ${cfg.gridSize}×${cfg.gridSize} patch grid`);
  return { loraBeforeBlocks: reads, addAfterBlocks: adds, fusionKernel };
}

/** The rank of these hyperparameters on this backbone, 'auto' resolved (autoRank; swinAutoRank over the read blocks). */
export function resolveRank(h: Recipe | Hyperparameters, cfg: BackboneConfig): number {
  if (h.rank !== 'auto') return h.rank;
  if (!cfg.swin) return autoRank(cfg.width);
  const reads = resolveBlocks(h, cfg).loraBeforeBlocks;
  return swinAutoRank(Math.min(...reads.map((i) => blockShape(cfg, i)[1])));
}

/** The model's adapter spec for these hyperparameters, labels and backbone. */
export function adapterSpecFor(h: Recipe | Hyperparameters, cfg: BackboneConfig, labels: string[]): AdapterSpec {
  return { rank: resolveRank(h, cfg), beta: h.beta, labels, ...resolveBlocks(h, cfg) };
}
