/**
 * P10 — a cached training step (what every epoch after the prefix fill is made of) against the
 * same step in PyTorch, 1 thread, same shapes: the DTL CSN's reads of the cached prefix block
 * inputs, the frozen suffix with reads and additions, pool, final norm, head, cross-entropy,
 * backward into the CSN and head only, AdamW (bench/lib/torch-train-step.py). Ours is the trainer's
 * step as a training thread runs it: trainStep with the frozen blocks' forward and VJP on
 * onnxruntime (one intra-op thread) when it loads, else tfjs-wasm with the trainer's default
 * checkpointing (tapeBlocks = depth / 4); the adapter's maths on tfjs-wasm, AdamW on the host. Figure: ms of process CPU per step, ours ÷ PyTorch's (lower is better;
 * 1 = parity). Rounds alternate between the two; each is the median of its rounds. PyTorch runs
 * from Debian's python3-torch (/usr/bin/python3); without it the row says so plainly.
 */
import { AdamW, createAdapter, detachNative, disposePrefix, initBackend, runPrefix, startBackboneEngine, trainStep, type Backbone } from '../../src/model/index.js';
import { defaultTapeBlocks } from '../../src/train/hyperparameters.js';
import { randomPixels } from '../../test/helpers/tiny-backbone.js';
import { runTorchPeer } from '../lib/torch.js';
import { authorsSpec, describeSize, syntheticBackbone, type BackboneSize } from '../lib/synthetic.js';
import type { Bench, BenchResult } from '../lib/types.js';
import { cpuMs, fmt, median, result } from '../lib/util.js';

interface Case {
  label: string;
  size: BackboneSize;
  rank: number;
  batch: number;
}

async function torchRound(b: Backbone, c: Case, split: number, minCpuMs: number): Promise<{ ms: number; version: string; note: string } | string> {
  const cfg = b.config;
  const r = await runTorchPeer<{ torch: string; msPerStep: number[] }>('torch-train-step.py', [cfg.width, cfg.depth, cfg.heads, cfg.tokens, split, c.rank, 10, c.batch, 1, minCpuMs / 1000]);
  return typeof r === 'string' ? r : { ms: r.out.msPerStep[0], version: r.out.torch, note: r.note };
}

const bench: Bench = {
  id: 'P10',
  title: 'cached DTL training step CPU time: this project ÷ PyTorch (1 thread)',
  async run({ quick, log }) {
    await initBackend('wasm');
    const rounds = quick ? 3 : 5;
    const minCpuMs = quick ? 1000 : 3000;
    const cases: Case[] = [
      { label: 'bundled-size backbone, batch 32', size: { width: 64, depth: 6, heads: 4, imageSize: 28, patchSize: 7 }, rank: 16, batch: 32 },
      // ViT-B/16 at 224, the authors' recipe (prefix blocks 0–6, 5 suffix blocks); quick mode keeps
      // 8 of 12 blocks (prefix 0–4, 3 suffix blocks): the per-block cost is what the ratio compares.
      { label: `ViT-B/16@224${quick ? ' (8 of 12 blocks)' : ''}, batch 8`, size: { width: 768, depth: quick ? 8 : 12, heads: 12, imageSize: 224, patchSize: 16 }, rank: 2, batch: 8 },
    ];
    const rows: BenchResult[] = [];
    for (const c of cases) {
      log(`P10: ${c.label}`);
      const backbone = syntheticBackbone(c.size);
      const engine = await startBackboneEngine(backbone, 'auto', { provider: 'cpu', threads: 1 });
      const cfg = backbone.config;
      const spec = authorsSpec(cfg.depth, 10, 0, c.rank);
      const split = Math.min(...spec.addAfterBlocks) + 1;
      const adapter = createAdapter(cfg, spec, { seed: 1 });
      const optimizer = new AdamW({ lr: 1e-3 });
      const pixels = randomPixels(c.batch, cfg, 3);
      const state = runPrefix(backbone, pixels, split);
      const labels = Int32Array.from({ length: c.batch }, (_, i) => i % 10);
      const tapeBlocks = defaultTapeBlocks(cfg.depth);
      const step = () => trainStep({ backbone, state, tapeBlocks, adapter, optimizer, labels });
      try {
        step(); // warm-up
        const ours: number[] = [];
        const theirs: number[] = [];
        let torchNote = '';
        let version = '';
        let blas = '';
        for (let r = 0; r < rounds && torchNote === ''; r++) {
          for (const side of r % 2 === 0 ? ['ours', 'torch'] : ['torch', 'ours']) {
            if (side === 'ours') {
              const c0 = cpuMs();
              let n = 0;
              do {
                step();
                n++;
              } while (cpuMs() - c0 < minCpuMs);
              ours.push((cpuMs() - c0) / n);
            } else {
              const t = await torchRound(backbone, c, split, minCpuMs);
              if (typeof t === 'string') torchNote = t;
              else {
                theirs.push(t.ms);
                version = t.version;
                blas = t.note;
              }
            }
          }
        }
        const detail =
          `${quick ? 'quick' : 'full'}; ${describeSize(c.size)}; DTL rank ${c.rank}, reads 0–${cfg.depth - 1}, additions after ${spec.addAfterBlocks[0]}–${cfg.depth - 1} ` +
          `(prefix blocks 0–${split - 1} cached, ${cfg.depth - split} suffix blocks), 10 classes, batch ${c.batch}, ` +
          `${engine === 'onnxruntime' ? 'frozen blocks on onnxruntime (forward + VJP graphs, 1 thread)' : `all on tfjs (tapeBlocks ${tapeBlocks})`}; ` +
          `ms of CPU per step, ${rounds} alternating rounds of ≥ ${minCpuMs} ms: ours ${fmt(median(ours))} [${ours.map((x) => fmt(x)).join(', ')}]` +
          (torchNote !== '' ? `; ${torchNote}` : `, PyTorch ${version} ${fmt(median(theirs))} [${theirs.map((x) => fmt(x)).join(', ')}] (autograd, torch.optim.AdamW; ${blas})`);
        log(detail);
        rows.push(result(`P10 ${c.label}: cached training step CPU, ours ÷ PyTorch (1 thread)`, torchNote !== '' ? NaN : median(ours) / median(theirs), null, detail));
      } finally {
        disposePrefix(state);
        pixels.dispose();
        adapter.dispose();
        optimizer.dispose();
        await detachNative(backbone);
        backbone.dispose();
      }
    }
    return rows;
  },
};

export default bench;
