/**
 * Trains one DTL adapter on a prepared data set with the paper's recipe: seeded initialisation
 * and batch order, AdamW, warm-up + cosine learning rate per epoch, validation accuracy after
 * every epoch, the best epoch's weights kept (outside the wasm heap) and restored at the end,
 * early stopping. Every batch's prefix comes from the shared-prefix cache.
 *
 * With lr or variant 'auto' the run starts with every candidate recipe of the search (search.ts)
 * training side by side on the same batches — grouped steps through one suffix — and drops the
 * weaker ones at the rungs of successive halving (halving.ts); the last one continues its run.
 *
 * Deterministic for a seed on one backend: all randomness is drawn from seeded streams, and the
 * event loop is only yielded to between batches (so heartbeats and cancels get through).
 */
import * as tf from '@tensorflow/tfjs';
import {
  blockShape,
  disposePrefix,
  imagesToTensor,
  measurePeakBytes,
  predictLogits,
  splitPoint,
  type Adapter,
  type AdapterSpec,
  type Backbone,
} from '../model/index.js';
import { Candidate, candidatesPerStep, chunks, closeRung, stepGroup, type LossCurvePoint } from './candidates.js';
import { augmentViews, examplePixelsFn, planSplits, type SplitPlan } from './examples.js';
import { adapterSpecFor, defaultTapeBlocks, type Hyperparameters, type Recipe } from './hyperparameters.js';
import type { PreparedDataset } from './ingest/index.js';
import { calibrationQuality, fitTemperature, type Calibration, type NoCalibration } from './calibrate.js';
import { classWeighting, rowWeights, type ClassWeighting } from './class-weights.js';
import { evaluate, type Evaluation } from './metrics.js';
import { TrainingPrefixStore, type CachePrecision, type TrainingPrefixStoreStats } from './prefix-store.js';
import { learningRate, prng, shuffle, stopsEarly, subSeed } from './schedule.js';
import { planSearch, rankCandidates, type SearchEvent, type SearchRecord } from './search.js';
import { evalBatch } from './step.js';

export type { LossCurvePoint } from './candidates.js';

export interface EpochProgress {
  /** 1-based. */
  epoch: number;
  /** Epochs planned (warm-up + cosine); early stopping may end sooner. */
  epochs: number;
  lr: number;
  trainLoss: number;
  trainAccuracy: number;
  /** null when the data set was too small to validate (split.valSource 'none'). */
  valLoss: number | null;
  valAccuracy: number | null;
  bestEpoch: number;
  bestValAccuracy: number | null;
  /** Training images per second in this epoch (validation excluded; during the search, × candidates). */
  imagesPerSecond: number;
  epochSeconds: number;
  /** Remaining planned epochs × mean epoch time so far. */
  etaSeconds: number;
  cache: Pick<TrainingPrefixStoreStats, 'computed' | 'hits' | 'storedRows' | 'storedBytes'>;
  /** While the search runs: candidates still training; the numbers above are the leader's. */
  candidates?: number;
  recipe?: { lr: number; variant: Recipe['variant'] };
}

export interface TrainingMetrics {
  /** The final evaluation: on the test split when the data set has one, else on val, else (no validation) on train. */
  evaluation: Evaluation;
  /** The last epoch when there is no validation. */
  bestEpoch: number;
  bestValAccuracy: number | null;
  epochsRun: number;
  epochsPlanned: number;
  stoppedEarly: boolean;
  lossCurve: LossCurvePoint[];
  split: { train: number; val: number; test: number; valSource: SplitPlan['valSource'] };
  trainableParams: number;
  trainSeconds: number;
  /** Tensor bytes alive at the peak of a training step (backbone and adapter included). */
  peakTensorBytes: number;
  /** What one training step allocates above what was alive before it. */
  stepPeakBytes: number;
  cache: TrainingPrefixStoreStats;
  augment: Hyperparameters['augment'];
  /** The loss weight each class trained with (class-weights.ts). */
  classWeighting: ClassWeighting;
  /** The softmax temperature fitted on val, with NLL / ECE before and after (calibrate.ts). */
  calibration: Calibration | NoCalibration;
  /** The recipe search, when lr or variant was 'auto'. */
  search?: SearchRecord;
}

export interface TrainOptions {
  backbone: Backbone;
  dataset: PreparedDataset;
  hyperparameters: Hyperparameters;
  /** Prefix cache byte budget (TRAIN_CACHE_BYTES); 0 recomputes every prefix every epoch. */
  cacheBytes: number;
  cachePrecision?: CachePrecision;
  /** Checked between batches; an abort rejects with the signal's reason. */
  signal?: AbortSignal;
  onEpoch?: (p: EpochProgress) => void | Promise<void>;
  /**
   * After every training or validation batch, with how long it kept the event loop busy (ms), and
   * once before the first, with an estimate from one image's forward pass (for callers that time
   * batches; the job no longer needs it: it trains in a thread, so its heartbeats keep running).
   */
  onBatch?: (busyMs: number) => void | Promise<void>;
  /** The recipe search as it goes (nothing when the recipe is explicit). */
  onSearch?: (e: SearchEvent) => void | Promise<void>;
}

export interface TrainResult {
  /** Trainable adapter holding the best epoch's weights; the caller saves and disposes it. */
  adapter: Adapter;
  spec: AdapterSpec;
  /** The recipe trained: the search's choice where lr or variant was 'auto'. */
  hyperparameters: Recipe;
  metrics: TrainingMetrics;
}

const yieldToLoop = () => new Promise<void>((r) => setImmediate(r));


/**
 * The first batch also fills its rows of the prefix cache, and nothing is known of its cost yet:
 * time one image's forward (no tape, nothing cached, no randomness drawn) and announce a batch as
 * three forwards per image — the prefix once, the suffix forward and backward.
 */
async function announceFirstBatch(opts: TrainOptions, adapter: Adapter, pixels: Float32Array, rows: number): Promise<void> {
  if (opts.onBatch === undefined || rows === 0) return;
  const t0 = performance.now();
  // The suffix keeps its output out of tidy's reach: dispose it by hand.
  const logits = tf.tidy(() => predictLogits(opts.backbone, adapter, imagesToTensor([pixels], opts.backbone.config)));
  logits.dataSync();
  logits.dispose();
  await opts.onBatch((performance.now() - t0) * rows * 3);
}

/** The recipe a run without validation trains: explicit values kept, 'auto' replaced by a middle-of-the-grid choice. */
function withoutSearch(h: Hyperparameters): Hyperparameters {
  return { ...h, lr: h.lr === 'auto' ? NO_VALIDATION_LR : h.lr, variant: h.variant === 'auto' ? 'dtl' : h.variant };
}

/** With no validation split the search cannot rank; 1e-2 is the grid's middle and where most searched runs land. */
const NO_VALIDATION_LR = 1e-2;

/** Fits the adapter's temperature on its validation logits (sets adapter.temperature), or says why not. */
function calibrateAdapter(adapter: Adapter, valLogits: Float32Array | null, valLabels: Int32Array): Calibration | NoCalibration {
  if (valLogits === null) return { temperature: 1, fittedOn: 'none', reason: 'too few images to hold out a validation set' };
  const c = fitTemperature(valLogits, valLabels, adapter.spec.labels.length);
  adapter.temperature = c.temperature;
  return c;
}

export async function trainAdapter(opts: TrainOptions): Promise<TrainResult> {
  const { backbone, dataset: ds, hyperparameters: h, signal } = opts;
  const cfg = backbone.config;
  const pixelsOf = examplePixelsFn(ds, cfg);
  const views = augmentViews(h.augment, cfg.imageSize);
  /** Row key of the prefix cache: image index × views + view (0: the image as it is). */
  const keyOf = (index: number, view: number) => index * views.length + view;
  const plan = planSplits(ds, h.valFraction, subSeed(h.seed, 1));
  const total = h.warmupEpochs + h.epochs;
  const validates = plan.val.length > 0;
  // Too few images to hold out a validation set: nothing to rank candidates on, so no search.
  const search = planSearch(validates ? h : withoutSearch(h), cfg, total);
  const specs = search.recipes.map((r) => adapterSpecFor(r, cfg, ds.labels));
  // Candidates differ in lr and variant only: one split and one set of cached rows for all.
  const split = Math.min(...specs.map((s) => splitPoint(s, cfg.depth)));
  const tapeBlocks = h.tapeBlocks ?? defaultTapeBlocks(cfg.depth);
  // Sized by the suffix's largest block (tokens × d on a ViT; on a Swin its earliest stage's).
  const [suffixTokens, suffixWidth] = blockShape(cfg, Math.min(split, cfg.depth - 1));
  const perStep = candidatesPerStep(h.batchSize, suffixTokens, suffixWidth);
  const cache = new TrainingPrefixStore({
    backbone,
    split,
    readBlocks: specs[0].loraBeforeBlocks,
    budgetBytes: opts.cacheBytes,
    precision: opts.cachePrecision ?? 'float16',
    pixels: (key) => pixelsOf(Math.floor(key / views.length), views[key % views.length]),
    chunk: h.batchSize,
  });
  const labelsOf = (idx: number[]) => Int32Array.from(idx, (i) => ds.labelIds[i]);
  const weighting = classWeighting(h.classWeights, labelsOf(plan.train), ds.labels.length);
  const started = performance.now();

  signal?.throwIfAborted();
  // Every candidate starts from the same seeded initialisation: they differ in recipe only.
  const all = search.recipes.map((r, i) => new Candidate(i, r, specs[i], backbone, subSeed(h.seed, 2)));
  let alive = all;
  let winner: Candidate | undefined;
  let searchSeconds = 0;
  try {
    /** Predictions, logits and mean loss over a split (unmirrored prefixes), per candidate. */
    const predict = async (idx: number[], cands: Candidate[]) => {
      const out = cands.map(() => ({ predicted: new Int32Array(idx.length), logits: new Float32Array(idx.length * ds.labels.length), loss: 0 }));
      let at = 0;
      for (const part of chunks(idx, h.batchSize)) {
        signal?.throwIfAborted();
        const t0 = performance.now();
        const state = await cache.batch(part.map((i) => keyOf(i, 0)));
        try {
          for (const [g, group] of chunks(cands, perStep).entries()) {
            evalBatch(backbone, group.map((c) => c.adapter), state, labelsOf(part)).forEach((r, k) => {
              out[g * perStep + k].predicted.set(r.predicted, at);
              out[g * perStep + k].logits.set(r.logits, at * ds.labels.length);
              out[g * perStep + k].loss += r.lossSum / Math.max(1, idx.length);
            });
          }
        } finally {
          disposePrefix(state);
        }
        at += part.length;
        await opts.onBatch?.(performance.now() - t0);
        await yieldToLoop();
      }
      return out;
    };
    await announceFirstBatch(opts, all[0].adapter, pixelsOf(plan.train[0] ?? 0), Math.min(h.batchSize, plan.train.length) * Math.min(perStep, all.length));
    if (search.searched) {
      await opts.onSearch?.({ stage: 'start', budget: h.budget, grid: search.grid, candidates: all.length, rungs: search.rungs });
    }

    let peak = { peakTensorBytes: 0, stepPeakBytes: 0 };
    let stoppedEarly = false;
    let epochSecondsSum = 0;
    let rung = 0;
    // The epoch the search's last rung chose the winner (0 without a search): see stopsEarly.
    let chosenAt = 0;
    for (let e = 0; e < total; e++) {
      const epochStart = performance.now();
      for (const c of alive) c.optimizer.lr = learningRate(e, c.recipe);
      const rand = prng(subSeed(h.seed, 100 + e));
      const order = shuffle([...plan.train], rand);
      let trainMs = 0;
      for (const part of chunks(order, h.batchSize)) {
        signal?.throwIfAborted();
        const keys = part.map((i) => keyOf(i, views.length === 1 ? 0 : Math.floor(rand() * views.length)));
        let t0 = performance.now();
        const state = await cache.batch(keys);
        try {
          const labels = labelsOf(part);
          for (const group of chunks(alive, perStep)) {
            const step = () => stepGroup(backbone, group, state, labels, tapeBlocks, rowWeights(weighting, labels));
            if (peak.peakTensorBytes === 0) {
              // Measured once: the first step allocates what every step of its size does.
              const before = tf.memory().numBytes;
              const m = await measurePeakBytes(step);
              peak = { peakTensorBytes: before + m.peakBytes, stepPeakBytes: m.peakBytes };
            } else {
              step();
            }
            // A grouped step of many candidates is long: the lease hears of each one.
            const busy = performance.now() - t0;
            trainMs += busy;
            await opts.onBatch?.(busy);
            t0 = performance.now();
          }
        } finally {
          disposePrefix(state);
        }
        await yieldToLoop();
      }
      const vals = validates ? await predict(plan.val, alive) : null;
      const seconds = (performance.now() - epochStart) / 1000;
      epochSecondsSum += seconds;
      alive.forEach((c, k) => {
        const valAccuracy = vals === null ? null : vals[k].predicted.reduce((a, p, i) => a + (p === ds.labelIds[plan.val[i]] ? 1 : 0), 0) / plan.val.length;
        const trainLoss = c.lossSum / plan.train.length;
        const trainAccuracy = c.correct / plan.train.length;
        c.endEpoch({ epoch: e + 1, lr: c.optimizer.lr, trainLoss, trainAccuracy, valLoss: vals === null ? null : vals[k].loss, valAccuracy, seconds }, vals?.[k].logits);
      });
      const ranked = rankCandidates(alive.map((c) => ({ index: c.index, valAccuracy: c.best.valAccuracy, valLoss: c.best.valLoss, c }))).map((x) => x.c);
      const lead = ranked[0];
      const s = cache.stats();
      await opts.onEpoch?.({
        ...lead.curve[lead.curve.length - 1],
        epochs: total,
        bestEpoch: lead.best.epoch,
        bestValAccuracy: validates ? lead.best.valAccuracy : null,
        imagesPerSecond: trainMs > 0 ? (plan.train.length * alive.length * 1000) / trainMs : 0,
        epochSeconds: seconds,
        etaSeconds: (total - e - 1) * (epochSecondsSum / (e + 1)),
        cache: { computed: s.computed, hits: s.hits, storedRows: s.storedRows, storedBytes: s.storedBytes },
        ...(alive.length > 1 ? { candidates: alive.length, recipe: { lr: lead.recipe.lr, variant: lead.recipe.variant } } : {}),
      });
      const r = search.rungs[rung];
      if (r !== undefined && e + 1 === r.until) {
        searchSeconds = (performance.now() - started) / 1000;
        const kept = await closeRung(ranked, r.keep, ++rung, e + 1, searchSeconds, opts.onSearch);
        alive = alive.filter((c) => kept.includes(c)); // grid order: the same groups every run
        if (alive.length === 1) chosenAt = e + 1;
      }
      const only = alive.length === 1 ? alive[0] : null;
      if (only && validates && stopsEarly({ epoch: e + 1, bestEpoch: only.best.epoch, chosenAt, patience: h.patience, warmupEpochs: h.warmupEpochs, total })) {
        stoppedEarly = true;
        break;
      }
    }

    const w = alive[0];
    w.restoreBest();
    const evalSplit = plan.test.length > 0 ? 'test' : validates ? 'val' : 'train';
    const evalIdx = evalSplit === 'test' ? plan.test : evalSplit === 'val' ? plan.val : plan.train;
    // The temperature is fitted on the kept weights' validation logits (from the epoch that kept them).
    const calibration = calibrateAdapter(w.adapter, validates ? w.best.valLogits : null, labelsOf(plan.val));
    const [final] = await predict(evalIdx, [w]);
    const evaluation = evaluate(evalSplit, ds.labels, labelsOf(evalIdx), final.predicted, final.loss);
    if (calibration.fittedOn === 'val' && evalSplit === 'test') {
      const q = (t: number) => calibrationQuality(final.logits, labelsOf(evalIdx), ds.labels.length, t);
      calibration.test = { before: q(1), after: q(calibration.temperature) };
    }
    const metrics: TrainingMetrics = {
      evaluation,
      bestEpoch: w.best.epoch,
      bestValAccuracy: validates ? w.best.valAccuracy : null,
      epochsRun: w.curve.length,
      epochsPlanned: total,
      stoppedEarly,
      lossCurve: w.curve,
      split: { train: plan.train.length, val: plan.val.length, test: plan.test.length, valSource: plan.valSource },
      trainableParams: w.adapter.trainableVariables().reduce((a, v) => a + v.size, 0),
      trainSeconds: (performance.now() - started) / 1000,
      ...peak,
      cache: cache.stats(),
      augment: h.augment,
      classWeighting: weighting,
      calibration,
      ...(search.searched
        ? {
            search: {
              budget: h.budget,
              grid: search.grid,
              rungs: search.rungs,
              candidates: all.map((c) => c.record()),
              chosen: { lr: w.recipe.lr, variant: w.recipe.variant },
              searchSeconds,
              winner: 'continued' as const,
            },
          }
        : {}),
    };
    winner = w;
    return { adapter: w.adapter, spec: w.spec, hyperparameters: w.recipe, metrics };
  } finally {
    for (const c of alive) c.dispose(c === winner);
    cache.clear();
  }
}
