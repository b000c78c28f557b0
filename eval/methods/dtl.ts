/**
 * DTL, DTL+ and "service defaults" through the service's own trainer (src/train/trainer.ts
 * `trainAdapter`), called the way the `train` job calls it: the task as a PreparedDataset (the
 * training images unassigned, the test images as the 'test' split), hyperparameters parsed by
 * the service's schema, the service's default prefix-cache budget and precision. The trainer
 * holds out its validation split, keeps the best epoch, stops early, and evaluates on the test
 * split: the study reads its metrics instead of running a loop of its own.
 *
 * "service defaults" passes `{}` — exactly what a tenant who gives no hyperparameters gets, so
 * that row follows the defaults wherever they go. The hand-tuned rows pass only the learning
 * rate, the variant and the study's seed (plus the study's epochs when --epochs shortens them).
 */
import { configSchema } from '../../src/config.js';
import { createAdapter, disposePrefix, runPrefix, splitPoint, trainStep, AdamW, type AdapterSpec } from '../../src/model/index.js';
import { adapterSpecFor, parseHyperparameters, type HyperparametersInput } from '../../src/train/hyperparameters.js';
import { trainAdapter } from '../../src/train/trainer.js';
import { DEFAULT_RECIPE, type Recipe } from '../recipe.js';
import { stepPeak } from './common.js';
import type { Method, MethodId, RunOutcome, StudyTask } from './types.js';

/** TRAIN_CACHE_BYTES as the service has it by default. */
const SERVICE_CACHE_BYTES = configSchema.parse({}).TRAIN_CACHE_BYTES;

/** The recipe fields that differ from the service's defaults (--epochs, --seed), as hyperparameters. */
function recipeOverrides(r: Recipe): HyperparametersInput {
  const out: HyperparametersInput = {};
  for (const k of Object.keys(DEFAULT_RECIPE) as (keyof Recipe)[]) if (r[k] !== DEFAULT_RECIPE[k]) Object.assign(out, { [k]: r[k] });
  return out;
}

/** Trains through `trainAdapter` with these hyperparameters (raw input, parsed by the service's schema). */
export async function trainThroughService(t: StudyTask, input: HyperparametersInput): Promise<RunOutcome> {
  const h = parseHyperparameters(input);
  const t0 = performance.now();
  const r = await trainAdapter({ backbone: t.backbone, dataset: t.dataset, hyperparameters: h, cacheBytes: SERVICE_CACHE_BYTES });
  const seconds = (performance.now() - t0) / 1000;
  try {
    const m = r.metrics;
    // The peak of the schedule is the learning rate the run used (chosen by the trainer when none was given).
    const lr = Math.max(...m.lossCurve.map((p) => p.lr));
    const variant = r.spec.fusionKernel > 0 ? `dtl+ (k=${r.spec.fusionKernel})` : 'dtl';
    return {
      valAcc: m.bestValAccuracy ?? m.evaluation.accuracy,
      testAcc: m.evaluation.accuracy,
      trainableParams: m.trainableParams,
      losses: m.lossCurve.map((p) => p.trainLoss),
      seconds,
      lr: Number(lr.toPrecision(3)),
      spec: r.spec,
      note: `${variant}, lr ${Number(lr.toPrecision(3))}, best epoch ${m.bestEpoch}/${m.epochsRun}${m.stoppedEarly ? ' (stopped early)' : ''}`,
    };
  } finally {
    r.adapter.dispose();
  }
}

/** Peak bytes of one step from pixels (prefix outside the tape, then the trainer's taped suffix step). */
async function dtlStepPeak(backbone: StudyTask['backbone'], spec: AdapterSpec, pixels: Parameters<typeof runPrefix>[1], labels: number[]): Promise<number> {
  const adapter = createAdapter(backbone.config, spec, { seed: 1 });
  const opt = new AdamW();
  const step = () => {
    const state = runPrefix(backbone, pixels, splitPoint(spec, backbone.config.depth));
    try {
      return trainStep({ backbone, adapter, optimizer: opt, state, labels }).loss;
    } finally {
      disposePrefix(state);
    }
  };
  try {
    return await stepPeak(step);
  } finally {
    opt.dispose();
    adapter.dispose();
  }
}

function trainerMethod(id: MethodId, label: string, lrGrid: number[], input: (lr: number | undefined, r: Recipe) => HyperparametersInput): Method {
  return {
    id,
    label,
    lrGrid,
    run: (t, lr) => trainThroughService(t, input(lr, t.recipe)),
    async stepPeakBytes({ backbone, classes, pixels, labels, outcome }) {
      const labelNames = Array.from({ length: classes }, (_, i) => String(i));
      const spec = outcome?.spec ?? adapterSpecFor(parseHyperparameters(input(lrGrid[0], DEFAULT_RECIPE)), backbone.config, labelNames);
      return dtlStepPeak(backbone, spec, pixels, labels);
    },
  };
}

const DTL_GRID = [1e-2, 3e-2, 1e-1];

/** Hand-tuned: the study's learning rate and variant, everything else the service's defaults. */
export function dtlMethod(variant: 'dtl' | 'dtl+', extra: HyperparametersInput = {}): Method {
  return trainerMethod(variant, variant === 'dtl+' ? 'DTL+ (k=3)' : 'DTL', DTL_GRID, (lr, r) => ({ ...recipeOverrides(r), ...extra, variant, lr }));
}

export const dtl = dtlMethod('dtl');
export const dtlPlus = dtlMethod('dtl+');

/** No hyperparameters at all: what the service's train job does with an empty object. */
export const serviceDefaults: Method = trainerMethod('service', 'Service defaults (no hyperparameters)', [], () => ({}));
