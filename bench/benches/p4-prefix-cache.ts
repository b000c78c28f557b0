/**
 * P4 — the shared-prefix cache: steady-state epoch time of trainAdapter with the prefix cache ÷
 * the same epoch without it (cacheBytes 0: every prefix recomputed every epoch), at the authors'
 * split (additions after blocks 6–11 of 12, so blocks 0–6 are the prefix).
 *
 * Same data, same hyperparameters (the trainer's defaults: batch 32, tapeBlocks = depth/4,
 * float16 cache rows), same seed, so both runs do identical optimisation work. An epoch is
 * everything between two onEpoch callbacks: the training batches and the validation pass. The
 * cached run's first epoch fills the cache and is left out; the uncached run's epochs are all
 * alike. Cached and uncached runs alternate (order flipped each round); the figure is the ratio
 * of the median epoch CPU times (the trainer is single-threaded and CPU-bound).
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

const bench: Bench = {
  id: 'P4',
  title: 'training epoch time with the prefix cache ÷ without',
  async run({ quick, log }) {
    const size = quick ? QUICK : FULL;
    const images = quick ? 80 : 160;
    const epochs = quick ? 1 : 2; // measured epochs per run
    const rounds = quick ? 1 : 2;
    await initBackend('wasm');
    const backbone = syntheticBackbone(size);
    const dataset = syntheticDataset(images, 10, size.imageSize, 5);
    const h = parseHyperparameters({ epochs, warmupEpochs: 0, patience: 0, seed: 1 });

    /** Epoch CPU times of one run; the cached run trains one extra epoch first (the one that fills the cache). */
    const run = async (cached: boolean) => {
      const times: number[] = [];
      let mark = cpuMs();
      const out = await trainAdapter({
        backbone,
        dataset,
        hyperparameters: { ...h, epochs: epochs + (cached ? 1 : 0) },
        cacheBytes: cached ? 1 << 30 : 0,
        onEpoch: () => {
          const now = cpuMs();
          times.push(now - mark);
          mark = now;
        },
      });
      const stats = out.metrics.cache;
      const trainImages = out.metrics.split.train;
      out.adapter.dispose();
      return { times: cached ? times.slice(1) : times, stats, trainImages };
    };
    try {
      log('P4: warm-up');
      await trainAdapter({ backbone, dataset, hyperparameters: { ...h, epochs: 1 }, cacheBytes: 0 }).then((r) => r.adapter.dispose());
      const withCache: number[] = [];
      const without: number[] = [];
      let cacheStats: Awaited<ReturnType<typeof run>>['stats'] | undefined;
      let trainImages = 0;
      for (let r = 0; r < rounds; r++) {
        for (const cached of r % 2 === 0 ? [true, false] : [false, true]) {
          const got = await run(cached);
          (cached ? withCache : without).push(...got.times);
          if (cached) cacheStats = got.stats;
          trainImages = got.trainImages;
          log(`P4: round ${r + 1}/${rounds} ${cached ? 'cached' : 'uncached'}: epochs ${got.times.map((t) => fmt(t)).join(', ')} ms cpu`);
        }
      }
      const ratio = median(withCache) / median(without);
      return [
        result(
          'P4 epoch time with the prefix cache ÷ without',
          ratio,
          { op: '<=', value: 0.7 },
          `median epoch CPU time with the cache ${fmt(median(withCache))} ms (${withCache.length} epochs after the filling one: ${withCache.map((t) => fmt(t)).join(', ')}) ` +
            `÷ without ${fmt(median(without))} ms (${without.length} epochs: ${without.map((t) => fmt(t)).join(', ')}); ${rounds} round(s) of alternating runs. ` +
            `${describeSize(size)}; authors' split (reads 0–11, additions 6–11: blocks 0–6 prefix, 7–11 suffix); ${images} random images of 10 classes ` +
            `(${trainImages} train, the rest held out for validation every epoch); trainer defaults (batch 32, AdamW, DTL rank 2, tapeBlocks 3, float16 cache rows: ` +
            `${cacheStats ? `${cacheStats.storedRows} rows, ${fmt(cacheStats.storedBytes / 2 ** 20)} MiB` : ''}). An epoch = training batches + validation pass.`,
        ),
      ];
    } finally {
      backbone.dispose();
    }
  },
};

export default bench;
