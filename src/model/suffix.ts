/**
 * The suffix of the DTL forward pass for ONE adapter, stage by stage — the only place this maths
 * is written (forward.ts runs it for serving and evaluation, train-blockwise.ts for training; the
 * several-adapter batch in forward-batched.ts is the same maths with every row's own weights):
 *
 *   pre      h = Σ reads of the prefix's block inputs; x = state.x (+ the addition after block split−1)
 *   block i  h ← h + read_i(x) (if i is read); x ← Block_i(x) (+ fuse(θ(h)) if the adapter adds after i)
 *
 * then pooled = pool(x) and logits = head(pooled). h stays null while no block has been read:
 * θ(0) = 0 and the conv of 0 is 0, so an addition of an empty accumulator is skipped.
 */
import * as tf from '@tensorflow/tfjs';
import { AppError } from '../errors.js';
import type { Adapter } from './adapter.js';
import type { Backbone } from './backbone.js';
import { csnAddition, csnRead, pool, vitBlock } from './layers.js';
import { checkRows, splitPoint, type PrefixState } from './prefix.js';
import { patchMerge, swinBlock, swinCsnAddition, swinOpensStage } from './swin-layers.js';

export interface SuffixGroup {
  adapter: Adapter;
  /** Rows of the prefix batch this adapter classifies, in output order (may repeat). */
  rows: number[];
}

/** Validates suffix groups against the backbone and the prefix state (AppError on misuse). */
export function checkSuffixGroups(backbone: Backbone, state: PrefixState, groups: SuffixGroup[]): void {
  const { width, depth } = backbone.config;
  if (groups.length === 0) throw new AppError('internal', 'forwardSuffix needs at least one group');
  if (state.inputs.length !== state.split) throw new AppError('internal', 'prefix state is inconsistent');
  for (const { adapter, rows } of groups) {
    if (adapter.disposed) throw new AppError('internal', 'adapter has been disposed');
    if (adapter.width !== width || adapter.depth !== depth) {
      throw new AppError('adapter_backbone_mismatch', `adapter is for width ${adapter.width} × ${adapter.depth} blocks, backbone is ${width} × ${depth}`);
    }
    const s = splitPoint(adapter.spec, depth);
    if (s < state.split) throw new AppError('internal', `adapter adds after block ${s - 1}, inside the prefix (split ${state.split})`);
    if (rows.length === 0) throw new AppError('internal', 'a suffix group has no rows');
    checkRows(rows, state.x.shape[0]);
  }
}

/** The state between stages: the block input x [n, t, d] and the accumulator h [n·t, d] (null = still zero). */
export interface Stage {
  x: tf.Tensor3D;
  h: tf.Tensor2D | null;
}

export interface AdapterSuffix {
  pre(): Stage;
  block(i: number, p: Stage): Stage;
  /**
   * Block i around a frozen block output computed elsewhere (the backbone's engine):
   * block(i, p) = after(i, p, Block_i(p.x)). Only on a ViT — a Swin block can open a stage with
   * patch merging, so its stages stay whole.
   */
  after?(i: number, p: Stage, y: tf.Tensor3D): Stage;
  /** The read weights of block i, and the fusion taps if the adapter adds after it: what block(i) trains. */
  blockVariables(i: number): tf.Variable[];
  /** What pre() trains: the reads of the prefix's block inputs and the addition after block split−1. */
  preVariables(): tf.Variable[];
}

/**
 * One adapter's suffix stages over `rows` of the prefix batch (default: every row, in order).
 * None of them tidy: callers decide the scope (and whether a gradient tape watches).
 */
export function adapterSuffix(backbone: Backbone, adapter: Adapter, state: PrefixState, rows?: number[]): AdapterSuffix {
  const cfg = backbone.config;
  const spec = adapter.spec;
  const n = rows?.length ?? state.x.shape[0];
  const all = rows === undefined || (rows.length === state.x.shape[0] && rows.every((r, i) => r === i));
  const pick = (t: tf.Tensor3D) => (all ? t : (tf.gather(t, tf.tensor1d(rows!, 'int32')) as tf.Tensor3D));
  const reads = new Set(spec.loraBeforeBlocks);
  const adds = new Set(spec.addAfterBlocks);
  // On a Swin the accumulator restarts with every stage (the authors' code passes 0 to each
  // stage), so only the reads in the stage of block split−1 reach the addition after it.
  const swin = cfg.swin;
  const early = spec.loraBeforeBlocks.filter((i) => i < state.split && (!swin || swin.blockStage[i] === swin.blockStage[state.split - 1]));
  /** DTL+ taps used by the addition after block i: the adapter's, or on a Swin its stage's. */
  const tapsAt = (i: number) => (swin ? (adapter.swin?.fusions?.[swin.blockStage[i]] ?? null) : adapter.fusion);

  const readAt = (i: number, x: tf.Tensor3D) => csnRead(x, adapter.reads.get(i)!.a, adapter.reads.get(i)!.b);
  const csnAdd = (i: number, h: tf.Tensor2D) =>
    swin ? swinCsnAddition(cfg, i, h, n, spec.beta, tapsAt(i), spec.fusionKernel) : csnAddition(h, n, cfg, spec.beta, adapter.fusion, spec.fusionKernel);
  const addition = (i: number, y: tf.Tensor3D, h: tf.Tensor2D | null): tf.Tensor3D => (adds.has(i) && h ? tf.add<tf.Tensor3D>(y, csnAdd(i, h)) : y);
  const readVars = (i: number) => (reads.has(i) ? ([adapter.reads.get(i)!.a, adapter.reads.get(i)!.b] as tf.Variable[]) : []);
  const fusionVars = (i: number) => {
    const taps = tapsAt(i);
    return adds.has(i) && taps ? [taps as tf.Variable] : [];
  };

  return {
    pre: () => {
      const terms = early.map((i) => readAt(i, pick(state.inputs[i])));
      const h = terms.length === 0 ? null : terms.length === 1 ? terms[0] : tf.addN(terms);
      const x = pick(state.x);
      return { x: state.split > 0 ? addition(state.split - 1, x, h) : x, h };
    },
    block: (i, p) => {
      // A Swin block that opens a stage: patch merging first (its output is what the block reads), accumulator restarted.
      const opens = swin !== undefined && swinOpensStage(cfg, i);
      const x = opens ? patchMerge(backbone, swin.blockStage[i] - 1, p.x) : p.x;
      const prior = opens ? null : p.h;
      const h = reads.has(i) ? (prior ? tf.add<tf.Tensor2D>(prior, readAt(i, x)) : readAt(i, x)) : prior;
      return { x: addition(i, swin ? swinBlock(backbone, i, x) : vitBlock(x, backbone.blocks[i], cfg), h), h };
    },
    ...(swin
      ? {}
      : {
          after: (i: number, p: Stage, y: tf.Tensor3D): Stage => {
            const h = reads.has(i) ? (p.h ? tf.add<tf.Tensor2D>(p.h, readAt(i, p.x)) : readAt(i, p.x)) : p.h;
            return { x: addition(i, y, h), h };
          },
        }),
    blockVariables: (i) => [...readVars(i), ...fusionVars(i)],
    preVariables: () => [...early.flatMap(readVars), ...(state.split > 0 ? fusionVars(state.split - 1) : [])],
  };
}

/**
 * Holds the tensors of a suffix run between stages: each stage runs in its own tidy and only its
 * outputs survive. The prefix state's tensors are borrowed, never kept or disposed here.
 */
export class StageKeeper {
  private readonly owned = new Set<tf.Tensor>();

  constructor(private readonly state: PrefixState) {}

  /** Runs a stage in a tidy and keeps its outputs. */
  run(f: () => Stage): Stage {
    const [x, h] = tf.tidy(() => {
      const p = f();
      return p.h ? [p.x, p.h] : [p.x];
    }) as [tf.Tensor3D, tf.Tensor2D?];
    return { x: this.keep(x), h: this.keep(h ?? null) };
  }

  keep<T extends tf.Tensor | null>(t: T): T {
    if (t && !this.owned.has(t) && t !== this.state.x && !this.state.inputs.includes(t as tf.Tensor3D)) this.owned.add(tf.keep(t));
    return t;
  }

  release(t: tf.Tensor | null): void {
    if (t && this.owned.delete(t)) t.dispose();
  }

  /** Frees what a stage no longer needs after `next` was computed from it (h passes through blocks that read nothing). */
  releaseStage(done: Stage, next: Stage): void {
    if (done.x !== next.x) this.release(done.x);
    if (done.h !== next.h) this.release(done.h);
  }

  disposeAll(): void {
    for (const t of this.owned) t.dispose();
    this.owned.clear();
  }
}

/** One adapter's pooled features [rows, d] (the head's input), each stage in its own tidy. The caller owns them. */
export function adapterPooled(backbone: Backbone, group: SuffixGroup, state: PrefixState): tf.Tensor2D {
  const stages = adapterSuffix(backbone, group.adapter, state, group.rows);
  const keeper = new StageKeeper(state);
  try {
    let p = keeper.run(stages.pre);
    for (let i = state.split; i < backbone.config.depth; i++) {
      const input = p;
      p = keeper.run(() => stages.block(i, input));
      keeper.releaseStage(input, p);
    }
    const last = p.x;
    return tf.keep(tf.tidy(() => pool(backbone, last)));
  } finally {
    keeper.disposeAll();
  }
}
