/**
 * P4 — the shared-prefix cache: steady-state epoch time of trainAdapter with the prefix cache ÷
 * the same epoch without it (cacheBytes 0: every prefix recomputed every epoch), at the authors'
 * split (additions after blocks 6–11 of 12, so blocks 0–6 are the prefix).
 *
 * Same data, same hyperparameters (the trainer's defaults: batch 32, tapeBlocks = depth/4,
 * float16 cache rows), same seed, so both runs do identical optimisation work. An epoch is
 * everything between two onEpoch callbacks: the training batches and the validation pass. The
 * cached run's first epoch fills the cache and is left out. The two runs take turns epoch by
 * epoch in one process; the figure is the median of the ratios of adjacent epochs' CPU times
 * (the trainer is single-threaded and CPU-bound; adjacent epochs share the machine's load).
 */
import { initBackend } from '../../src/model/index.js';
import { countExamples, type PreparedDataset } from '../../src/train/ingest/index.js';
import { parseHyperparameters } from '../../src/train/hyperparameters.js';
import { trainAdapter } from '../../src/train/trainer.js';
import { rng } from '../../test/helpers/tiny-backbone.js';
import { describeSize, syntheticBackbone, type BackboneSize } from '../lib/synthetic.js';
import type { Bench } from '../lib/types.js';
import { cpuMs, fmt, median, result } from '../lib/util.js';

const FULL: BackboneSize = { width: 192, depth: 12, heads: 3, imageSize: 32, patchSize: 4 };
const QUICK: BackboneSize = { ...FULL, imageSize: 16 };

/** Random images of `classes` labels, no split assigned (the trainer holds out 20 % for validation). */
function syntheticDataset(count: number, classes: number, imageSize: number, seed: number): PreparedDataset {
  const r = rng(seed);
  const pixels = Uint8Array.from({ length: count * imageSize * imageSize * 3 }, () => Math.floor(r.uniform() * 256));
  const labelIds = Int32Array.from({ length: count }, (_, i) => i % classes);
  const splits = new Uint8Array(count);
  return {
    imageSize,
    labels: Array.from({ length: classes }, (_, k) => `class-${k}`),
    counts: countExamples(classes, labelIds, splits),
    sources: Array.from({ length: count }, (_, i) => `image-${i}`),
    pixels,
    labelIds,
    splits,
  };
}

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
}
function deferred(): Deferred {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

const bench: Bench = {
  id: 'P4',
  title: 'training epoch time with the prefix cache ÷ without',
  async run({ quick, log }) {
    const size = quick ? QUICK : FULL;
    const images = quick ? 48 : 160;
    const epochs = quick ? 3 : 5; // measured epochs per run (= pairs; odd, so the median is one of them)
    await initBackend('wasm');
    const backbone = syntheticBackbone(size);
    const dataset = syntheticDataset(images, 10, size.imageSize, 5);
    // One recipe (the pre-search defaults), so both runs train one adapter.
    const h = parseHyperparameters({ epochs, warmupEpochs: 0, patience: 0, seed: 1, lr: 1e-3, variant: 'dtl' });
    try {
      // Two trainAdapter runs in this process, taking turns epoch by epoch (each waits inside its
      // onEpoch callback, which the trainer awaits, until the other has run an epoch): the cached
      // run's filling epoch, then uncached 1, cached 2, uncached 2, cached 3, … Only one runs at a
      // time, so the process CPU time between a run's release and its next onEpoch is its epoch.
      const cached = { times: [] as number[], wake: deferred(), done: false };
      const uncached = { times: [] as number[], wake: deferred(), done: false };
      let mark = 0;
      const turn = async (me: typeof cached, other: typeof cached, first?: () => void) => {
        me.times.push(cpuMs() - mark);
        me.wake = deferred();
        if (first) first();
        else other.wake.resolve();
        if (!other.done) await me.wake.promise;
        mark = cpuMs();
      };
      let uncachedRun: Promise<Awaited<ReturnType<typeof trainAdapter>>> | undefined;
      const startUncached = () => {
        mark = cpuMs();
        uncachedRun = trainAdapter({ backbone, dataset, hyperparameters: h, cacheBytes: 0, onEpoch: () => turn(uncached, cached) });
        void uncachedRun.then(
          () => {
            uncached.done = true;
            cached.wake.resolve();
          },
          () => cached.wake.resolve(),
        );
      };
      log(`P4: 1 + ${epochs} cached epochs alternating with ${epochs} uncached ones`);
      mark = cpuMs();
      const cachedRun = trainAdapter({
        backbone,
        dataset,
        hyperparameters: { ...h, epochs: epochs + 1 },
        cacheBytes: 1 << 30,
        onEpoch: () => turn(cached, uncached, uncachedRun === undefined ? startUncached : undefined),
      });
      void cachedRun.then(
        () => {
          cached.done = true;
          uncached.wake.resolve();
        },
        () => uncached.wake.resolve(),
      );
      const a = await cachedRun;
      if (uncachedRun === undefined) throw new Error('the uncached run never started');
      const b = await uncachedRun;
      const stats = a.metrics.cache;
      const trainImages = a.metrics.split.train;
      a.adapter.dispose();
      b.adapter.dispose();
      const withCache = cached.times.slice(1);
      const without = uncached.times;
      // Pair k: uncached epoch k and the cached epoch right after it.
      const ratios = without.map((u, k) => withCache[k] / u);
      log(`P4: pairs ${ratios.map((r) => fmt(r)).join(', ')}`);
      return [
        result(
          'P4 epoch time with the prefix cache ÷ without',
          median(ratios),
          { op: '<=', value: 0.7 },
          `median of ${ratios.length} per-pair ratios (${ratios.map((r) => fmt(r)).join(', ')}) of epoch CPU times, the two runs taking turns epoch by epoch; ` +
            `with the cache ${withCache.map((t) => fmt(t)).join(', ')} ms (after the filling epoch, ${fmt(cached.times[0])} ms), ` +
            `without ${without.map((t) => fmt(t)).join(', ')} ms; ratio of the medians ${fmt(median(withCache) / median(without))}. ` +
            `${describeSize(size)}; authors' split (reads 0–11, additions 6–11: blocks 0–6 prefix, 7–11 suffix); ${images} random images of 10 classes ` +
            `(${trainImages} train, the rest held out for validation every epoch); trainer defaults (batch 32, AdamW, DTL rank 2, tapeBlocks 3, float16 cache rows: ` +
            `${stats.storedRows} rows, ${fmt(stats.storedBytes / 2 ** 20)} MiB). An epoch = training batches + validation pass.`,
        ),
      ];
    } finally {
      backbone.dispose();
    }
  },
};

export default bench;
