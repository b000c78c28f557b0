/**
 * P3 on a Swin: peak tensor memory of the trainer's DTL step ÷ the same step with the tape over
 * all blocks, as P3 measures it for the ViT (same method: prefix outside the tape + the model's
 * trainStep with the trainer's default tapeBlocks vs trainStepFullTape, bytes of distinct tensor
 * buffers in the wasm heap). The recipe is the authors' Swin-B one scaled down: reads from the
 * third stage's first block, additions from the middle of the third stage.
 */
import * as tf from '@tensorflow/tfjs';
import { AdamW, createAdapter, disposePrefix, initBackend, measurePeakBytes, runPrefix, splitPoint, trainStep, trainStepFullTape } from '../../src/model/index.js';
import { defaultTapeBlocks } from '../../src/train/hyperparameters.js';
import { tinySwin, type TinySwinOptions } from '../../test/helpers/tiny-swin.js';
import { images as makeImages } from '../lib/synthetic.js';
import type { Bench } from '../lib/types.js';
import { result } from '../lib/util.js';

const SIZE: TinySwinOptions = { embedDim: 32, depths: [2, 2, 6, 2], heads: [1, 2, 4, 8], windowSize: 4, patchSize: 2, imageSize: 64, seed: 3 };
const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;

const bench: Bench = {
  id: 'P3',
  title: 'Swin: DTL training-step peak memory ÷ the same step with the tape over all blocks',
  async run({ quick, log }) {
    const batch = quick ? 4 : 16;
    await initBackend('wasm');
    const backbone = tinySwin(SIZE);
    const depth = backbone.config.depth;
    // Swin-B: reads 4–23, additions 14–23 of 2+2+18+2 blocks; here 2+2+6+2: reads 4–11, additions 7–11.
    const spec = { rank: 2, beta: 100, loraBeforeBlocks: [4, 5, 6, 7, 8, 9, 10, 11], addAfterBlocks: [7, 8, 9, 10, 11], fusionKernel: 0, labels: Array.from({ length: 10 }, (_, k) => `c${k}`) };
    const split = splitPoint(spec, depth);
    const adapter = createAdapter(backbone.config, spec, { seed: 1 });
    const optimizer = new AdamW();
    const s = SIZE.imageSize;
    const pixels = tf.tensor4d(Float32Array.from(makeImages(batch, backbone.config, 3).flatMap((a) => Array.from(a))), [batch, s, s, 3]);
    const labels = Int32Array.from({ length: batch }, (_, i) => i % 10);
    const tapeBlocks = defaultTapeBlocks(depth);
    const dtlStep = () => {
      const state = runPrefix(backbone, pixels, split);
      try {
        return trainStep({ backbone, adapter, optimizer, state, labels, tapeBlocks }).loss;
      } finally {
        disposePrefix(state);
      }
    };
    try {
      dtlStep(); // optimizer moments exist before anything is measured
      log('P3 Swin: measuring peak memory');
      const full = (await measurePeakBytes(() => trainStepFullTape({ backbone, adapter, optimizer, pixels, labels: Array.from(labels) }))).peakBytes;
      const dtl = (await measurePeakBytes(dtlStep)).peakBytes;
      const a = backbone.config.swin!;
      return [
        result('P3 Swin: DTL training-step peak memory ÷ tape over all blocks (trainer default)', dtl / full, { op: '<=', value: 0.4 }, `DTL step ${mib(dtl)} ÷ tape over all blocks ${mib(full)}. ` +
          `Swin embed ${a.embedDim}, depths ${a.depths.join('+')}, heads ${a.stageHeads.join('/')}, window ${a.windowSize}, image ${s}/patch ${SIZE.patchSize} (grids ${a.stageGrids.join(', ')}); ` +
          `batch ${batch}; DTL adapter (rank 2, reads 4–11, additions 7–11: blocks 0–${split - 1} are the prefix), last ${tapeBlocks} blocks taped, 10 classes, AdamW; the DTL side includes computing the prefix.`),
      ];
    } finally {
      pixels.dispose();
      adapter.dispose();
      optimizer.dispose();
      backbone.dispose();
    }
  },
};

export default bench;
