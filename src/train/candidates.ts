/**
 * The adapters a training run trains side by side: one for an explicit recipe, several while the
 * recipe search runs. Each candidate has its own adapter, AdamW, learning-rate schedule, best
 * epoch and loss curve; a batch trains all of them through grouped steps (the model's trainStep
 * with groups: one suffix for up to `perStep` of them, each on the same prefix rows) and a
 * validation batch evaluates them through one batched suffix.
 */
import * as tf from '@tensorflow/tfjs';
import { AdamW, createAdapter, trainStep, type Adapter, type AdapterSpec, type Backbone, type PrefixState } from '../model/index.js';
import type { Recipe } from './hyperparameters.js';
import type { CandidateRecord, SearchEvent } from './search.js';
import { countCorrect } from './step.js';

export interface LossCurvePoint {
  epoch: number;
  lr: number;
  /** Class-weighted when the run's class weights are not all 1. */
  trainLoss: number;
  trainAccuracy: number;
  /** null when the data set was too small to validate (split.valSource 'none'). */
  valLoss: number | null;
  valAccuracy: number | null;
  seconds: number;
}

export class Candidate {
  readonly adapter: Adapter;
  readonly optimizer: AdamW;
  best = { epoch: 0, valAccuracy: -1, valLoss: Infinity, weights: [] as Float32Array[], valLogits: new Float32Array(0) as Float32Array<ArrayBufferLike> };
  readonly curve: LossCurvePoint[] = [];
  droppedAtRung: number | null = null;
  lossSum = 0;
  correct = 0;

  constructor(
    readonly index: number,
    readonly recipe: Recipe,
    readonly spec: AdapterSpec,
    backbone: Backbone,
    seed: number,
  ) {
    this.adapter = createAdapter(backbone.config, spec, { seed });
    this.optimizer = new AdamW({ lr: recipe.lr, weightDecay: recipe.weightDecay });
  }

  /**
   * Records an epoch; keeps the weights, and the validation logits they gave (the temperature is
   * fitted on them), when validation improved (ties: lower validation loss).
   */
  endEpoch(point: LossCurvePoint, valLogits?: Float32Array): void {
    this.curve.push(point);
    if (point.valAccuracy === null || point.valLoss === null) {
      // Without validation the last epoch is the one kept: nothing to snapshot.
      this.best = { ...this.best, epoch: point.epoch };
    } else if (point.valAccuracy > this.best.valAccuracy || (point.valAccuracy === this.best.valAccuracy && point.valLoss < this.best.valLoss)) {
      const weights = this.adapter.trainableVariables().map((v) => Float32Array.from(v.dataSync() as Float32Array));
      this.best = { epoch: point.epoch, valAccuracy: point.valAccuracy, valLoss: point.valLoss, weights, valLogits: valLogits ?? new Float32Array(0) };
    }
    this.lossSum = 0;
    this.correct = 0;
  }

  record(): CandidateRecord {
    const { lr, variant } = this.recipe;
    const { valAccuracy, valLoss, epoch } = this.best;
    return { lr, variant, valAccuracy, valLoss, bestEpoch: epoch, epochsRun: this.curve.length, droppedAtRung: this.droppedAtRung };
  }

  restoreBest(): void {
    if (this.best.weights.length === 0) return; // no validation: the last epoch's weights stand
    this.adapter.trainableVariables().forEach((v, i) => tf.tidy(() => v.assign(tf.tensor(this.best.weights[i], v.shape, 'float32'))));
  }

  /** Frees the optimizer's moments (and the adapter unless it is being kept). */
  dispose(keepAdapter = false): void {
    this.optimizer.dispose();
    if (!keepAdapter) this.adapter.dispose();
    this.best.weights = [];
    this.best.valLogits = new Float32Array(0);
  }
}

/** Consecutive slices of at most `size`. */
export function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += Math.max(1, size)) out.push(items.slice(i, i + Math.max(1, size)));
  return out;
}

/**
 * How many candidates one grouped step takes: as many as keep a step's activation tensors near
 * 2²² floats (16 MiB) per block tensor — all 14 of a balanced search at batch 32 on the bundled
 * backbone (17 tokens × 64), one at a time on ViT-B (197 × 768), whose single step already fills
 * much of the wasm heap.
 */
export function candidatesPerStep(batchSize: number, tokens: number, width: number): number {
  return Math.max(1, Math.floor(2 ** 22 / (batchSize * tokens * width)));
}

/** One training step of `group` on the batch (rows weighted by `weights`); each candidate's loss and correct count accumulate. */
export function stepGroup(backbone: Backbone, group: Candidate[], state: PrefixState, labels: Int32Array, tapeBlocks: number, weights?: Float32Array): void {
  const rows = [...labels.keys()];
  // Plain DTL first, DTL+ after (a stable sort): the grouped suffix runs the fusion conv once over the consecutive DTL+ groups.
  const ordered = [...group].sort((a, b) => Number(a.adapter.fusion !== null) - Number(b.adapter.fusion !== null));
  const r =
    ordered.length === 1
      ? trainStep({ backbone, adapter: ordered[0].adapter, optimizer: ordered[0].optimizer, state, labels, tapeBlocks, weights })
      : trainStep({ backbone, state, tapeBlocks, groups: ordered.map((c) => ({ adapter: c.adapter, optimizer: c.optimizer, rows, labels, weights })) });
  ordered.forEach((c, k) => {
    c.lossSum += r.groups[k].loss * labels.length;
    c.correct += countCorrect(r.groups[k].predicted, labels);
  });
}

/**
 * A rung of the search: `ranked` (best first) keeps its first `keep`; every candidate's standing
 * is reported, the dropped ones are freed, and a single survivor is announced as the choice.
 */
export async function closeRung(
  ranked: Candidate[],
  keep: number,
  rung: number,
  epoch: number,
  seconds: number,
  onSearch?: (e: SearchEvent) => void | Promise<void>,
): Promise<Candidate[]> {
  const kept = ranked.slice(0, keep);
  const dropped = ranked.slice(keep);
  for (const c of dropped) c.droppedAtRung = rung;
  for (const c of ranked) await onSearch?.({ stage: 'candidate', rung, epoch, kept: kept.includes(c), candidate: c.record() });
  await onSearch?.({ stage: 'rung', rung, epoch, kept: kept.length, dropped: dropped.length, seconds });
  for (const c of dropped) c.dispose();
  if (kept.length === 1) {
    const [w] = kept;
    await onSearch?.({ stage: 'chosen', lr: w.recipe.lr, variant: w.recipe.variant, valAccuracy: w.best.valAccuracy, epoch, seconds });
  }
  return kept;
}
