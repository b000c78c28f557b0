/**
 * DTL and DTL+ through the service's own model core: createAdapter, runPrefix, trainStep (tape
 * over the suffix only), predictLogits. The shared prefix (blocks before the first addition) of
 * every training image is computed once and reused every epoch — the saving DTL is built for.
 *
 * Placement, scaled from the authors' ViT-B/16 scripts (reads before every block, additions after
 * blocks 6..11 of 12): reads before every block, additions after the second half of the blocks.
 */
import {
  AdamW,
  concatPrefix,
  createAdapter,
  disposePrefix,
  gatherPrefix,
  predictLogits,
  runPrefix,
  splitPoint,
  trainStep,
  type AdapterSpec,
  type Backbone,
  type PrefixState,
} from '../../src/model/index.js';
import { pixelsOf, predictRows, range, runEpochs } from '../recipe.js';
import { sizeOf, stepPeak } from './common.js';
import type { FitArgs, Fitted, Method } from './types.js';

export interface DtlOptions {
  rank: number;
  beta: number;
  /** DTL+ kernel; 0 = DTL. */
  kernel: number;
  /** First block after which θ(h) is added; additions continue to the last block. */
  firstAdd?: number;
}

export function dtlSpec(backbone: Backbone, o: DtlOptions, classes: number): AdapterSpec {
  const depth = backbone.config.depth;
  const first = o.firstAdd ?? Math.floor(depth / 2);
  return {
    rank: o.rank,
    beta: o.beta,
    loraBeforeBlocks: range(depth),
    addAfterBlocks: range(depth - first).map((i) => first + i),
    fusionKernel: o.kernel,
    labels: range(classes).map(String),
  };
}

/** Prefix states of `rows`, computed in chunks and concatenated (kept; dispose with disposePrefix). */
function prefixOf(backbone: Backbone, set: FitArgs['set'], rows: readonly number[], split: number, chunk = 200): PrefixState {
  const parts: PrefixState[] = [];
  try {
    for (let s = 0; s < rows.length; s += chunk) {
      const px = pixelsOf(backbone, set, rows.slice(s, s + chunk));
      try {
        parts.push(runPrefix(backbone, px, split));
      } finally {
        px.dispose();
      }
    }
    return parts.length === 1 ? parts.splice(0, 1)[0] : concatPrefix(parts);
  } finally {
    parts.forEach(disposePrefix);
  }
}

export function dtlMethod(o: DtlOptions, id: 'dtl' | 'dtl+' = o.kernel > 0 ? 'dtl+' : 'dtl'): Method {
  return {
    id,
    label: o.kernel > 0 ? `DTL+ (k=${o.kernel})` : 'DTL',
    lrGrid: [1e-3, 3e-3, 1e-2, 3e-2],
    fit({ backbone, set, rows, classes, lr, recipe }: FitArgs): Fitted {
      const spec = dtlSpec(backbone, o, classes);
      const adapter = createAdapter(backbone.config, spec, { seed: recipe.seed });
      const opt = new AdamW({ weightDecay: recipe.weightDecay });
      let cache: PrefixState | undefined;
      try {
        cache = prefixOf(backbone, set, rows, splitPoint(spec, backbone.config.depth));
        const position = new Map(rows.map((r, i) => [r, i]));
        const state = cache;
        const losses = runEpochs(rows, recipe, lr, (batch, stepLr) => {
          opt.lr = stepLr;
          const part = gatherPrefix(state, batch.map((r) => position.get(r)!));
          try {
            return trainStep({ backbone, adapter, optimizer: opt, state: part, labels: batch.map((r) => set.labels[r]) }).loss;
          } finally {
            disposePrefix(part);
          }
        });
        return {
          trainableParams: sizeOf(adapter.trainableVariables()),
          losses,
          predict: (s, r) => predictRows(backbone, s, r, (px) => predictLogits(backbone, adapter, px)),
          dispose: () => adapter.dispose(),
        };
      } catch (err) {
        adapter.dispose();
        throw err;
      } finally {
        if (cache) disposePrefix(cache);
        opt.dispose();
      }
    },
    async stepPeakBytes({ backbone, classes, pixels, labels }) {
      const spec = dtlSpec(backbone, o, classes);
      const adapter = createAdapter(backbone.config, spec, { seed: 1 });
      const opt = new AdamW();
      // From pixels: the prefix (no tape, one tidy per block) and then the taped suffix step.
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
    },
  };
}

export const dtl = dtlMethod({ rank: 2, beta: 100, kernel: 0 });
export const dtlPlus = dtlMethod({ rank: 2, beta: 100, kernel: 3 });
