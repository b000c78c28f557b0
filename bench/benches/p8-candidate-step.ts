/**
 * P8 — the recipe search's cost, on the bundled backbone (backbones/default: ViT width 64,
 * 6 blocks, 28×28, 17 tokens):
 *
 *  1. one grouped train step of K = 8 candidates (the 'fast' grid: 4 learning rates × DTL / DTL+,
 *     each on the same 32 prefix rows) ÷ 8 separate single-adapter steps on those rows, both as
 *     the trainer runs them: its recipes, adapter specs (rank 'auto', reads and additions
 *     'default'), split, tapeBlocks, float16 prefix store and stepGroup. The two take turns; the
 *     figure is the median of the per-pair ratios of CPU time. The detail splits each side into the
 *     frozen blocks (the engine's forward and VJP runs: the same rows either way) and the rest.
 *  2. a default job (lr and variant 'auto', budget balanced: 14 candidates) ÷ the single run the
 *     defaults used to be (lr 1e-3, DTL), both through trainAdapter on the same 1,000 images of 10
 *     learnable classes, prefix cache filled by each run itself. Wall time of each whole run
 *     (CPU-bound and single-threaded: CPU time ≈ wall time).
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { detachNative, disposePrefix, initBackend, loadBackboneFromDir, splitPoint, startBackboneEngine } from '../../src/model/index.js';
import { frozenBlocksOf } from '../../src/model/native/attach.js';
import { processCores } from '../../src/model/native/engine.js';
import { Candidate, stepGroup } from '../../src/train/candidates.js';
import { classWeighting, rowWeights } from '../../src/train/class-weights.js';
import { examplePixelsFn } from '../../src/train/examples.js';
import { countExamples, type PreparedDataset } from '../../src/train/ingest/index.js';
import { adapterSpecFor, defaultTapeBlocks, parseHyperparameters } from '../../src/train/hyperparameters.js';
import { TrainingPrefixStore } from '../../src/train/prefix-store.js';
import { subSeed } from '../../src/train/schedule.js';
import { planSearch } from '../../src/train/search.js';
import { trainAdapter } from '../../src/train/trainer.js';
import { rng } from '../../test/helpers/tiny-backbone.js';
import type { Bench } from '../lib/types.js';
import { cpuMs, fmt, median, result } from '../lib/util.js';

const BACKBONE = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'backbones', 'default');

/** `count` 28×28 images of 10 classes: a class-specific bar (position and orientation) in noise. */
function barsDataset(count: number, seed: number): PreparedDataset {
  const s = 28;
  const r = rng(seed);
  const pixels = new Uint8Array(count * s * s * 3);
  const labelIds = Int32Array.from({ length: count }, (_, i) => i % 10);
  for (let n = 0; n < count; n++) {
    const k = labelIds[n];
    const vertical = k % 2 === 0;
    const at = 3 + Math.floor(k / 2) * 5 + Math.floor(r.uniform() * 3) - 1;
    for (let y = 0; y < s; y++) {
      for (let x = 0; x < s; x++) {
        const onBar = Math.abs((vertical ? x : y) - at) <= 1;
        const v = Math.max(0, Math.min(255, (onBar ? 170 : 60) + r.normal() * 45));
        pixels.fill(v, ((n * s + y) * s + x) * 3, ((n * s + y) * s + x) * 3 + 3);
      }
    }
  }
  const splits = new Uint8Array(count);
  return {
    imageSize: s,
    labels: Array.from({ length: 10 }, (_, k) => `class-${k}`),
    counts: countExamples(10, labelIds, splits),
    sources: Array.from({ length: count }, (_, i) => `image-${i}`),
    pixels,
    labelIds,
    splits,
  };
}

/**
 * Counts CPU time spent in the backbone engine's frozen-block forward and VJP (`ms`) until
 * `restore()`; a no-op where the blocks run on tfjs.
 */
function meterFrozenBlocks(backbone: Parameters<typeof frozenBlocksOf>[0]): { ms: number; restore: () => void } {
  const blocks = frozenBlocksOf(backbone);
  const meter = { ms: 0, restore: () => {} };
  if (!blocks) return meter;
  const { forward, vjp } = blocks;
  const timedCall = <A extends unknown[]>(f: (...a: A) => Float32Array) => (...a: A) => {
    const t0 = cpuMs();
    try {
      return f.apply(blocks, a);
    } finally {
      meter.ms += cpuMs() - t0;
    }
  };
  blocks.forward = timedCall(forward);
  blocks.vjp = timedCall(vjp);
  meter.restore = () => Object.assign(blocks, { forward, vjp });
  return meter;
}

const bench: Bench = {
  id: 'P8',
  title: 'recipe search: grouped candidate step ÷ separate steps; default job ÷ one run',
  async run({ quick, log }) {
    await initBackend('wasm');
    const backbone = await loadBackboneFromDir(BACKBONE);
    const cfg = backbone.config;
    // The engine a training thread gets (threads/compute-runtime.ts): onnxruntime runs the frozen
    // blocks' forward and VJP when it loads, tfjs the adapters' maths.
    const engineName = await startBackboneEngine(backbone, 'auto', { provider: 'cpu' });
    const engineNote = engineName === 'onnxruntime' ? `frozen blocks on onnxruntime (${processCores()} intra-op threads; CPU time counts them all), adapters on tfjs wasm` : 'everything on tfjs wasm';
    const out = [];
    try {
      // 1. The 'fast' search's 8 candidates, one grouped step vs 8 single steps — configured by
      // the trainer's own code (planSearch, adapterSpecFor, splitPoint, defaultTapeBlocks, the
      // prefix store, Candidate, stepGroup), so the row measures the step a default job runs.
      const B = 32;
      const pairs = quick ? 5 : 11;
      const images = quick ? 300 : 1000;
      const dataset = barsDataset(images, 7);
      // Row 2's images; the batch is the first 32, the class weights the trainer's over all of them.
      const stepData = dataset;
      const h = parseHyperparameters({ seed: 1, budget: 'fast' });
      const recipes = planSearch(h, cfg, h.warmupEpochs + h.epochs).recipes;
      const specs = recipes.map((r) => adapterSpecFor(r, cfg, stepData.labels));
      const split = Math.min(...specs.map((sp) => splitPoint(sp, cfg.depth)));
      const tapeBlocks = h.tapeBlocks ?? defaultTapeBlocks(cfg.depth);
      const pixelsOf = examplePixelsFn(stepData, cfg);
      const store = new TrainingPrefixStore({ backbone, split, readBlocks: specs[0].loraBeforeBlocks, budgetBytes: 1 << 30, precision: 'float16', pixels: (key) => pixelsOf(key), chunk: B });
      const make = () => recipes.map((r, i) => new Candidate(i, r, specs[i], backbone, subSeed(h.seed, 2)));
      const grouped = make();
      const alone = make();
      const rows = [...Array(B).keys()];
      const state = await store.batch(rows);
      const y = Int32Array.from(rows, (i) => stepData.labelIds[i]);
      const weights = rowWeights(classWeighting(h.classWeights, stepData.labelIds, stepData.labels.length), y);
      const groupedStep = () => stepGroup(backbone, grouped, state, y, tapeBlocks, weights);
      const separateSteps = () => alone.forEach((c) => stepGroup(backbone, [c], state, y, tapeBlocks, weights));
      groupedStep();
      separateSteps();
      // The frozen blocks' share of each side (CPU time inside the engine's forward and VJP runs):
      // the same rows pass through them grouped or not, so only the rest can shrink by grouping.
      const frozenMeter = meterFrozenBlocks(backbone);
      const ratios: number[] = [];
      const tg: number[] = [];
      const ts: number[] = [];
      const fg: number[] = [];
      const fs: number[] = [];
      for (let p = 0; p < pairs; p++) {
        // Alternating order: neither side always runs first.
        const runs: [() => void, number[], number[]][] = p % 2 === 0 ? [[groupedStep, tg, fg], [separateSteps, ts, fs]] : [[separateSteps, ts, fs], [groupedStep, tg, fg]];
        for (const [f, into, frozenInto] of runs) {
          frozenMeter.ms = 0;
          const t0 = cpuMs();
          f();
          into.push(cpuMs() - t0);
          frozenInto.push(frozenMeter.ms);
        }
        ratios.push(tg[p] / ts[p]);
      }
      frozenMeter.restore();
      disposePrefix(state);
      store.clear();
      for (const c of [...grouped, ...alone]) c.dispose();
      const K = recipes.length;
      const variants = (v: string) => recipes.filter((r) => r.variant === v).length;
      const s0 = specs[0];
      log(`P8: grouped ${tg.map((t) => fmt(t)).join(', ')} ms; separate ${ts.map((t) => fmt(t)).join(', ')} ms`);
      out.push(
        result(
          `P8 one grouped step of ${K} candidates ÷ ${K} separate steps`,
          median(ratios),
          { op: '<=', value: 0.6 },
          `median of ${pairs} per-pair CPU-time ratios (${ratios.map((r) => fmt(r)).join(', ')}), order alternating; grouped median ${fmt(median(tg))} ms, ` +
            `${K} separate ${fmt(median(ts))} ms; of which the frozen blocks ${fmt(median(fg))} vs ${fmt(median(fs))} ms and the adapters' side (tfjs) ${fmt(median(tg.map((t, i) => t - fg[i])))} vs ${fmt(median(ts.map((t, i) => t - fs[i])))} ms; bundled backbone (${cfg.width}×${cfg.depth} blocks, ${cfg.tokens} tokens), batch ${B} rows per candidate, ` +
            `the trainer's configuration for budget 'fast': ${variants('dtl')} DTL + ${variants('dtl+')} DTL+ (kernel ${h.kernel}), rank ${s0.rank}, reads ${s0.loraBeforeBlocks.join(',')}, ` +
            `additions after ${s0.addAfterBlocks.join(',')}, split ${split}, tapeBlocks ${tapeBlocks}, prefix from the float16 store, stepGroup as the trainer calls it; ${engineNote}.`,
        ),
      );

      // 2. A default job vs the single run the defaults used to be.
      const time = async (hp: object) => {
        const t0 = performance.now();
        const r = await trainAdapter({ backbone, dataset, hyperparameters: parseHyperparameters({ seed: 1, ...hp }), cacheBytes: 1 << 30 });
        const seconds = (performance.now() - t0) / 1000;
        r.adapter.dispose();
        return { seconds, m: r.metrics, h: r.hyperparameters };
      };
      // Which of the two runs first moves each by up to ≈ 10 % (warm kernels and heap against a
      // grown one), so full mode runs two pairs in opposite orders and compares the totals.
      const orders: Array<Array<'old' | 'auto'>> = quick ? [['old', 'auto']] : [['old', 'auto'], ['auto', 'old']];
      const runs = { old: [] as Awaited<ReturnType<typeof time>>[], auto: [] as Awaited<ReturnType<typeof time>>[] };
      for (const order of orders) {
        for (const which of order) {
          const r = await time(which === 'old' ? { lr: 1e-3, variant: 'dtl' } : {});
          runs[which].push(r);
          log(`P8: ${which === 'old' ? 'single run' : 'default job'} ${fmt(r.seconds)} s, ${r.m.epochsRun} epochs, chose ${r.h.variant} lr ${r.h.lr}, accuracy ${fmt(r.m.evaluation.accuracy)}`);
        }
      }
      const total = (list: { seconds: number }[]) => list.reduce((a, r) => a + r.seconds, 0);
      const secs = (list: { seconds: number }[]) => list.map((r) => `${fmt(r.seconds)} s`).join(', ');
      const [auto] = runs.auto;
      const [old] = runs.old;
      out.push(
        result(
          'P8 default job (search, balanced) ÷ the old default single run',
          total(runs.auto) / total(runs.old),
          { op: '<=', value: 2.5 },
          `${images} images (28×28, 10 classes of noisy bars; 20 % held out for validation, which is also the final evaluation) on the bundled backbone; ` +
            `${orders.length === 1 ? 'one pair, old first' : 'two pairs in opposite orders (old, default; default, old), total ÷ total'}: ` +
            `default job ${secs(runs.auto)} (14 candidates, search ${fmt(auto.m.search?.searchSeconds ?? NaN)} s, chose ${auto.h.variant} lr ${auto.h.lr}, ` +
            `${auto.m.epochsRun} epochs, val accuracy ${fmt(auto.m.evaluation.accuracy)}); old default (lr 1e-3, DTL) ${secs(runs.old)} ` +
            `(${old.m.epochsRun} of ${old.m.epochsPlanned} epochs${old.m.stoppedEarly ? ', stopped early' : ''}, accuracy ${fmt(old.m.evaluation.accuracy)}); ` +
            `per-pair ratios ${runs.auto.map((a, i) => fmt(a.seconds / runs.old[i].seconds)).join(', ')}.`,
        ),
      );
    } finally {
      await detachNative(backbone);
      backbone.dispose();
    }
    return out;
  },
};

export default bench;
