/**
 * Trains one DTL adapter on a prepared data set with the paper's recipe: seeded initialisation
 * and batch order, AdamW, warm-up + cosine learning rate per epoch, validation accuracy after
 * every epoch, the best epoch's weights kept (outside the wasm heap) and restored at the end,
 * early stopping. Every batch's prefix comes from the shared-prefix cache.
 *
 * Deterministic for a seed on one backend: all randomness is drawn from seeded streams, and the
 * event loop is only yielded to between batches (so heartbeats and cancels get through).
 */
import * as tf from '@tensorflow/tfjs';
import {
  AdamW,
  createAdapter,
  disposePrefix,
  imagesToTensor,
  measurePeakBytes,
  predictLogits,
  splitPoint,
  trainStep,
  type Adapter,
  type AdapterSpec,
  type Backbone,
} from '../model/index.js';
import { examplePixelsFn, planSplits, type SplitPlan } from './examples.js';
import { adapterSpecFor, defaultTapeBlocks, type Hyperparameters } from './hyperparameters.js';
import type { PreparedDataset } from './ingest/index.js';
import { fitTemperature, calibrationQuality, type Calibration, type NoCalibration } from './calibrate.js';
import { classWeighting, rowWeights, type ClassWeighting } from './class-weights.js';
import { evaluate, type Evaluation } from './metrics.js';
import { TrainingPrefixStore, type CachePrecision, type TrainingPrefixStoreStats } from './prefix-store.js';
import { learningRate, prng, shuffle, subSeed } from './schedule.js';
import { countCorrect, evalBatch } from './step.js';

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
  /** Training images per second in this epoch (validation excluded). */
  imagesPerSecond: number;
  epochSeconds: number;
  /** Remaining planned epochs × mean epoch time so far. */
  etaSeconds: number;
  cache: Pick<TrainingPrefixStoreStats, 'computed' | 'hits' | 'storedRows' | 'storedBytes'>;
}

export interface LossCurvePoint {
  epoch: number;
  lr: number;
  /** Class-weighted when classWeighting's weights are not all 1. */
  trainLoss: number;
  trainAccuracy: number;
  valLoss: number | null;
  valAccuracy: number | null;
  seconds: number;
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
   * once before the first, with an estimate from one image's forward pass: the job runner uses it
   * to keep its lease longer than a batch on slow backends.
   */
  onBatch?: (busyMs: number) => void | Promise<void>;
}

export interface TrainResult {
  /** Trainable adapter holding the best epoch's weights; the caller saves and disposes it. */
  adapter: Adapter;
  spec: AdapterSpec;
  metrics: TrainingMetrics;
}

const yieldToLoop = () => new Promise<void>((r) => setImmediate(r));

function batches<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** Row keys of the prefix cache: image index × 2 + (1 if mirrored). */
const keyOf = (index: number, flip: boolean) => index * 2 + (flip ? 1 : 0);

function snapshot(adapter: Adapter): Float32Array[] {
  return adapter.trainableVariables().map((v) => Float32Array.from(v.dataSync() as Float32Array));
}

function restore(adapter: Adapter, weights: Float32Array[]): void {
  adapter.trainableVariables().forEach((v, i) => tf.tidy(() => v.assign(tf.tensor(weights[i], v.shape, 'float32'))));
}

/**
 * The first batch also fills its rows of the prefix cache, and nothing is known of its cost yet:
 * time one image's forward (no tape, nothing cached, no randomness drawn) and announce a batch as
 * three forwards per image — the prefix once, the suffix forward and backward.
 */
async function announceFirstBatch(opts: TrainOptions, adapter: Adapter, pixels: Float32Array, batchSize: number): Promise<void> {
  if (opts.onBatch === undefined || batchSize === 0) return;
  const t0 = performance.now();
  // The suffix keeps its output out of tidy's reach: dispose it by hand.
  const logits = tf.tidy(() => predictLogits(opts.backbone, adapter, imagesToTensor([pixels], opts.backbone.config)));
  logits.dataSync();
  logits.dispose();
  await opts.onBatch((performance.now() - t0) * batchSize * 3);
}

/** Fits the adapter's temperature on the validation logits (sets adapter.temperature), or says why not. */
function calibrate(
  adapter: Adapter,
  plan: SplitPlan,
  valLogits: Float32Array | null,
  labelsOf: (idx: number[]) => Int32Array,
): Calibration | NoCalibration {
  if (valLogits === null) return { temperature: 1, fittedOn: 'none', reason: 'too few images to hold out a validation set' };
  const c = fitTemperature(valLogits, labelsOf(plan.val), adapter.spec.labels.length);
  adapter.temperature = c.temperature;
  return c;
}

export async function trainAdapter(opts: TrainOptions): Promise<TrainResult> {
  const { backbone, dataset: ds, hyperparameters: h, signal } = opts;
  const cfg = backbone.config;
  const pixelsOf = examplePixelsFn(ds, cfg);
  const plan = planSplits(ds, h.valFraction, subSeed(h.seed, 1));
  const spec = adapterSpecFor(h, cfg, ds.labels);
  const split = splitPoint(spec, cfg.depth);
  const tapeBlocks = h.tapeBlocks ?? defaultTapeBlocks(cfg.depth);
  const cache = new TrainingPrefixStore({
    backbone,
    split,
    readBlocks: spec.loraBeforeBlocks,
    budgetBytes: opts.cacheBytes,
    precision: opts.cachePrecision ?? 'float16',
    pixels: (key) => pixelsOf(key >> 1, (key & 1) === 1),
    chunk: h.batchSize,
  });
  const labelsOf = (idx: number[]) => Int32Array.from(idx, (i) => ds.labelIds[i]);
  const weighting = classWeighting(h.classWeights, labelsOf(plan.train), ds.labels.length);
  const validates = plan.val.length > 0;
  const total = h.warmupEpochs + h.epochs;
  const started = performance.now();

  signal?.throwIfAborted();
  const adapter = createAdapter(cfg, spec, { seed: subSeed(h.seed, 2) });
  const optimizer = new AdamW({ lr: h.lr, weightDecay: h.weightDecay });
  let ok = false;
  try {
    /** Predictions, logits and mean loss over a split (unmirrored prefixes). */
    const predict = async (idx: number[]) => {
      const predicted = new Int32Array(idx.length);
      const logits = new Float32Array(idx.length * ds.labels.length);
      let lossSum = 0;
      let at = 0;
      for (const part of batches(idx, h.batchSize)) {
        signal?.throwIfAborted();
        const t0 = performance.now();
        const state = await cache.batch(part.map((i) => keyOf(i, false)));
        try {
          const r = evalBatch(backbone, adapter, state, labelsOf(part));
          predicted.set(r.predicted, at);
          logits.set(r.logits, at * ds.labels.length);
          lossSum += r.lossSum;
        } finally {
          disposePrefix(state);
        }
        at += part.length;
        await opts.onBatch?.(performance.now() - t0);
        await yieldToLoop();
      }
      return { predicted, logits, loss: lossSum / Math.max(1, idx.length) };
    };

    await announceFirstBatch(opts, adapter, pixelsOf(plan.train[0] ?? 0, false), Math.min(h.batchSize, plan.train.length));

    const curve: LossCurvePoint[] = [];
    let best = { epoch: 0, valAccuracy: -1, valLoss: Infinity, weights: [] as Float32Array[], valLogits: new Float32Array(0) };
    let peak = { peakTensorBytes: 0, stepPeakBytes: 0 };
    let stoppedEarly = false;
    let epochSecondsSum = 0;
    for (let e = 0; e < total; e++) {
      const epochStart = performance.now();
      optimizer.lr = learningRate(e, h);
      const rand = prng(subSeed(h.seed, 100 + e));
      const order = shuffle([...plan.train], rand);
      let lossSum = 0;
      let correct = 0;
      let trainMs = 0;
      for (const part of batches(order, h.batchSize)) {
        signal?.throwIfAborted();
        const keys = part.map((i) => keyOf(i, h.augment === 'flip' && rand() < 0.5));
        const t0 = performance.now();
        const state = await cache.batch(keys);
        try {
          const labels = labelsOf(part);
          // Block-wise back-propagation with the last `tapeBlocks` blocks on one tape.
          const weights = rowWeights(weighting, labels);
          const step = () => trainStep({ backbone, adapter, optimizer, state, labels, tapeBlocks, weights });
          let r: { loss: number; predicted: Int32Array };
          if (peak.peakTensorBytes === 0) {
            // Measured once: the first step allocates what every step does (same shapes).
            const before = tf.memory().numBytes;
            const m = await measurePeakBytes(step);
            r = m.result;
            peak = { peakTensorBytes: before + m.peakBytes, stepPeakBytes: m.peakBytes };
          } else {
            r = step();
          }
          lossSum += r.loss * part.length;
          correct += countCorrect(r.predicted, labels);
        } finally {
          disposePrefix(state);
        }
        const busy = performance.now() - t0;
        trainMs += busy;
        await opts.onBatch?.(busy);
        await yieldToLoop();
      }
      const val = validates ? await predict(plan.val) : null;
      const valAccuracy = val ? val.predicted.reduce((a, p, i) => a + (p === ds.labelIds[plan.val[i]] ? 1 : 0), 0) / plan.val.length : null;
      const seconds = (performance.now() - epochStart) / 1000;
      epochSecondsSum += seconds;
      const point: LossCurvePoint = {
        epoch: e + 1,
        lr: optimizer.lr,
        trainLoss: lossSum / plan.train.length,
        trainAccuracy: correct / plan.train.length,
        valLoss: val?.loss ?? null,
        valAccuracy,
        seconds,
      };
      curve.push(point);
      // Ties go to the lower validation loss: with few val images accuracy plateaus early.
      // Without validation the last epoch is the one kept (no snapshot needed).
      if (val === null || valAccuracy === null) best = { ...best, epoch: e + 1 };
      else if (valAccuracy > best.valAccuracy || (valAccuracy === best.valAccuracy && val.loss < best.valLoss)) {
        best = { epoch: e + 1, valAccuracy, valLoss: val.loss, weights: snapshot(adapter), valLogits: val.logits };
      }
      const s = cache.stats();
      await opts.onEpoch?.({
        ...point,
        epochs: total,
        bestEpoch: best.epoch,
        bestValAccuracy: validates ? best.valAccuracy : null,
        imagesPerSecond: trainMs > 0 ? (plan.train.length * 1000) / trainMs : 0,
        epochSeconds: seconds,
        etaSeconds: (total - e - 1) * (epochSecondsSum / (e + 1)),
        cache: { computed: s.computed, hits: s.hits, storedRows: s.storedRows, storedBytes: s.storedBytes },
      });
      if (validates && h.patience > 0 && e + 1 < total && e >= h.warmupEpochs && e + 1 - best.epoch >= h.patience) {
        stoppedEarly = true;
        break;
      }
    }

    if (validates) restore(adapter, best.weights);
    const evalSplit = plan.test.length > 0 ? 'test' : validates ? 'val' : 'train';
    const evalIdx = evalSplit === 'test' ? plan.test : evalSplit === 'val' ? plan.val : plan.train;
    // The best epoch's validation logits are the restored weights' (same pass, same numbers).
    const calibration = calibrate(adapter, plan, validates ? best.valLogits : null, labelsOf);
    const final = await predict(evalIdx);
    const evaluation = evaluate(evalSplit, ds.labels, labelsOf(evalIdx), final.predicted, final.loss);
    if (calibration.fittedOn === 'val' && evalSplit === 'test') {
      const q = (t: number) => calibrationQuality(final.logits, labelsOf(evalIdx), ds.labels.length, t);
      calibration.test = { before: q(1), after: q(calibration.temperature) };
    }
    const metrics: TrainingMetrics = {
      evaluation,
      bestEpoch: best.epoch,
      bestValAccuracy: validates ? best.valAccuracy : null,
      epochsRun: curve.length,
      epochsPlanned: total,
      stoppedEarly,
      lossCurve: curve,
      split: { train: plan.train.length, val: plan.val.length, test: plan.test.length, valSource: plan.valSource },
      trainableParams: adapter.trainableVariables().reduce((a, v) => a + v.size, 0),
      trainSeconds: (performance.now() - started) / 1000,
      ...peak,
      cache: cache.stats(),
      augment: h.augment,
      classWeighting: weighting,
      calibration,
    };
    ok = true;
    return { adapter, spec, metrics };
  } finally {
    optimizer.dispose();
    cache.clear();
    if (!ok) adapter.dispose();
  }
}
