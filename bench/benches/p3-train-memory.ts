/**
 * P3 — DTL's training memory: peak tensor memory of the trainer's DTL step ÷ the same step with
 * the gradient tape over all blocks (the LoRA-style baseline: every block's activations kept
 * for the backward), same batch, same adapter, same pixels in.
 *
 * Both sides start from the same pixels and include everything the step allocates: the DTL side
 * runs the shared prefix outside the tape (runPrefix) and then the trainer's own step function
 * (the model's trainStep, with the trainer's default tapeBlocks); the baseline runs
 * trainStepFullTape. Memory is bytes of distinct tensor buffers in the wasm heap
 * (model/kernels/memory.ts) — deterministic, so one measurement each. The other checkpointing
 * settings are measured alongside, with their step time relative to the fully taped suffix (CPU
 * time, interleaved repetitions).
 */
import * as tf from '@tensorflow/tfjs';
import {
  AdamW,
  createAdapter,
  disposePrefix,
  initBackend,
  installLeanGradients,
  installWasmKernelFixes,
  measurePeakBytes,
  runPrefix,
  splitPoint,
  trainStep,
  trainStepFullTape,
  uninstallLeanGradients,
  uninstallWasmKernelFixes,
} from '../../src/model/index.js';
import { defaultTapeBlocks } from '../../src/train/hyperparameters.js';
import { authorsSpec, describeSize, images as makeImages, syntheticBackbone, type BackboneSize } from '../lib/synthetic.js';
import type { Bench } from '../lib/types.js';
import { fmt, median, result, timed } from '../lib/util.js';

const SIZE: BackboneSize = { width: 192, depth: 12, heads: 3, imageSize: 32, patchSize: 4 };
const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;

const bench: Bench = {
  id: 'P3',
  title: 'DTL training-step peak memory ÷ the same step with the tape over all blocks',
  async run({ quick, log }) {
    const batch = quick ? 8 : 32;
    const reps = 3;
    await initBackend('wasm');
    const backbone = syntheticBackbone(SIZE);
    const depth = SIZE.depth;
    const spec = authorsSpec(depth, 10);
    const split = splitPoint(spec, depth);
    const adapter = createAdapter(backbone.config, spec, { seed: 1 });
    const optimizer = new AdamW();
    const s = SIZE.imageSize;
    const pixels = tf.tensor4d(Float32Array.from(makeImages(batch, backbone.config, 3).flatMap((a) => Array.from(a))), [batch, s, s, 3]);
    const labels = Int32Array.from({ length: batch }, (_, i) => i % 10);
    const suffix = depth - split;
    const byDefault = defaultTapeBlocks(depth);
    // Settings of the DTL step: the trainer's default first.
    const settings: Array<{ name: string; tapeBlocks: number }> = [
      { name: `default (last ${byDefault} blocks taped)`, tapeBlocks: byDefault },
      { name: 'whole suffix taped (no recomputation)', tapeBlocks: suffix },
      { name: 'every block recomputed', tapeBlocks: 0 },
    ];
    const dtlStep = (tapeBlocks: number) => {
      const state = runPrefix(backbone, pixels, split);
      try {
        return trainStep({ backbone, adapter, optimizer, state, labels, tapeBlocks }).loss;
      } finally {
        disposePrefix(state);
      }
    };
    const fullStep = () => trainStepFullTape({ backbone, adapter, optimizer, pixels, labels: Array.from(labels) });
    try {
      dtlStep(byDefault); // optimizer moments exist before anything is measured
      log('P3: measuring peak memory');
      const full = (await measurePeakBytes(fullStep)).peakBytes;
      const peaks = [] as number[];
      for (const st of settings) peaks.push((await measurePeakBytes(() => dtlStep(st.tapeBlocks))).peakBytes);
      // Full mode only (slow): what stock tfjs (copying Identity, stock back-propagation) gives,
      // and the step time of each setting.
      let stockFull = NaN;
      let stockPlain = NaN;
      const cpu = settings.map(() => [] as number[]);
      if (!quick) {
        uninstallWasmKernelFixes();
        uninstallLeanGradients();
        try {
          stockFull = (await measurePeakBytes(fullStep)).peakBytes;
          stockPlain = (await measurePeakBytes(() => dtlStep(suffix))).peakBytes;
        } finally {
          installWasmKernelFixes();
          installLeanGradients();
        }
        log(`P3: timing ${settings.length} settings × ${reps}`);
        for (let r = 0; r < reps; r++) {
          const order = r % 2 === 0 ? settings.map((_, i) => i) : settings.map((_, i) => settings.length - 1 - i);
          for (const i of order) cpu[i].push((await timed(() => dtlStep(settings[i].tapeBlocks))).cpuMs);
        }
      }
      const plainIdx = 1;
      const rel = (i: number) => median(cpu[i]) / median(cpu[plainIdx]);
      const common =
        `${describeSize(SIZE)}; batch ${batch}; DTL adapter (rank 2, reads 0–11, additions 6–11: blocks 0–${split - 1} are the prefix, ${suffix} suffix blocks), ` +
        `10 classes, AdamW. Memory: peak bytes of distinct tensor buffers in the wasm heap while the step runs, above what was live before ` +
        `(backbone, adapter, optimizer moments and the input pixels excluded on both sides); the DTL side includes computing the prefix. ` +
        `Tape over all blocks (denominator): ${mib(full)}.`;
      const rows = settings.map((st, i) =>
        result(
          i === 0 ? 'P3 DTL training-step peak memory ÷ tape over all blocks (trainer default)' : `P3 … with ${st.name}`,
          peaks[i] / full,
          i === 0 ? { op: '<=', value: 0.4 } : null,
          `${st.name}: ${mib(peaks[i])}; ` +
            (quick ? '(step times: full mode only). ' : `step CPU time ${fmt(rel(i))}× the whole-suffix-taped step (median of ${reps}, ${fmt(median(cpu[plainIdx]))} ms). `) +
            common +
            (i === plainIdx && !quick
              ? ` With stock tfjs 4.22 (Identity copying every tape-saved input, back-propagation keeping every gradient to the end) this step was ` +
                `${mib(stockPlain)} ÷ ${mib(stockFull)} = ${fmt(stockPlain / stockFull)}.`
              : ''),
        ),
      );
      return rows;
    } finally {
      pixels.dispose();
      optimizer.dispose();
      adapter.dispose();
      backbone.dispose();
    }
  },
};

export default bench;
