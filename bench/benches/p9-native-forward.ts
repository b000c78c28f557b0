/**
 * P9 — the frozen backbone's forward on each engine, images per CPU-second, 1 thread, same shapes:
 * tfjs (wasm + this project's kernels) and onnxruntime-node (the graphs of src/model/native/,
 * CPU provider, ENGINE_THREADS = 1), side by side in one process, rounds alternating between
 * them; and the same forward in PyTorch (bench/lib/torch-forward.py, torch.set_num_threads(1),
 * no_grad) when Debian's python3-torch is installed (run with /usr/bin/python3; OpenBLAS at its
 * default core type) — the rows say plainly when it is not.
 * Forward = embedding, every block, final LayerNorm of the mean-pooled patch tokens
 * (backboneFeatures on tfjs; on onnxruntime the native prefix at split = depth — one run per
 * segment of src/model/native/native-backbone.ts: one for the bundled backbone, twelve for ViT-B —
 * then the same pool on tfjs). Each round runs forwards until ≥ minCpuMs of process CPU time; the figure is the
 * median of the rounds.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import {
  backboneFeatures,
  detachNative,
  enginePrefixArrays,
  imagesToTensor,
  initBackend,
  loadBackboneFromDir,
  nativeOf,
  startBackboneEngine,
  type Backbone,
} from '../../src/model/index.js';
import { pool } from '../../src/model/layers.js';
import { images as makeImages, syntheticBackbone } from '../lib/synthetic.js';
import type { Bench, BenchResult } from '../lib/types.js';
import { runTorchPeer } from '../lib/torch.js';
import { cpuMs, fmt, median, result } from '../lib/util.js';

const here = path.dirname(fileURLToPath(import.meta.url));

interface Case {
  label: string;
  batch: number;
  load: () => Promise<Backbone>;
}

/** Images per CPU-second of `forward` on `batch` images, forwards repeated until minCpuMs. */
async function rate(forward: () => Promise<void>, batch: number, minCpuMs: number): Promise<number> {
  const c0 = cpuMs();
  let n = 0;
  do {
    await forward();
    n += batch;
  } while (cpuMs() - c0 < minCpuMs);
  return n / ((cpuMs() - c0) / 1000);
}

async function torchRate(b: Backbone, batch: number, rounds: number, minCpuMs: number): Promise<{ rate: number; rounds: number[]; version: string; note: string } | string> {
  const c = b.config;
  const r = await runTorchPeer<{ torch: string; imagesPerCpuSecond: number[] }>('torch-forward.py', [c.width, c.depth, c.heads, c.imageSize, c.patchSize, batch, rounds, minCpuMs / 1000]);
  return typeof r === 'string' ? r : { rate: median(r.out.imagesPerCpuSecond), rounds: r.out.imagesPerCpuSecond, version: r.out.torch, note: r.note };
}

const bench: Bench = {
  id: 'P9',
  title: 'backbone forward images per CPU-second: onnxruntime vs tfjs vs PyTorch (1 thread)',
  async run({ quick, log }) {
    await initBackend('wasm');
    const rounds = quick ? 3 : 5;
    const minCpuMs = quick ? 300 : 1500;
    const vitB = (depth: number) => () =>
      Promise.resolve(syntheticBackbone({ width: 768, depth, heads: 12, imageSize: 224, patchSize: 16 }));
    const bundled = () => loadBackboneFromDir(path.join(here, '../../backbones/default'));
    const cases: Case[] = [
      { label: 'bundled backbone b1', batch: 1, load: bundled },
      { label: 'bundled backbone b16', batch: 16, load: bundled },
      // Quick mode: 2 of ViT-B's 12 blocks (images per CPU-second scale by depth; the ratios hold).
      { label: `ViT-B/16@224${quick ? ' (2 of 12 blocks)' : ''} b1`, batch: 1, load: vitB(quick ? 2 : 12) },
      { label: `ViT-B/16@224${quick ? ' (2 of 12 blocks)' : ''} b8`, batch: 8, load: vitB(quick ? 2 : 12) },
    ];
    const rows: BenchResult[] = [];
    for (const c of cases) {
      log(`P9: ${c.label}`);
      const backbone = await c.load();
      try {
        const imgs = makeImages(c.batch, backbone.config, 5);
        const pixels = imagesToTensor(imgs, backbone.config);
        const onTfjs = async () => backboneFeatures(backbone, pixels).dispose();
        const { tokens, width } = backbone.config;
        const onOrt = async () => {
          // Only the last block's output enters tfjs, for the pool: no block input is kept.
          const { x } = await enginePrefixArrays(backbone, imgs, backbone.config.depth, []);
          tf.tidy(() => pool(backbone, tf.tensor3d(x, [c.batch, tokens, width]))).dispose();
        };
        await startBackboneEngine(backbone, 'onnxruntime', { threads: 1, provider: 'cpu' });
        const segments = nativeOf(backbone)!.layout.length;
        const tfjsRates: number[] = [];
        const ortRates: number[] = [];
        await onOrt(); // warm-up
        await detachNative(backbone);
        await onTfjs();
        for (let r = 0; r < rounds; r++) {
          // Alternate the order each round; the native sessions are attached only for their turn.
          for (const engine of r % 2 === 0 ? ['tfjs', 'ort'] : ['ort', 'tfjs']) {
            if (engine === 'tfjs') tfjsRates.push(await rate(onTfjs, c.batch, minCpuMs));
            else {
              await startBackboneEngine(backbone, 'onnxruntime', { threads: 1, provider: 'cpu' });
              ortRates.push(await rate(onOrt, c.batch, minCpuMs));
              await detachNative(backbone);
            }
          }
        }
        pixels.dispose();
        const torch = await torchRate(backbone, c.batch, rounds, minCpuMs);
        const ort = median(ortRates);
        const tfjs = median(tfjsRates);
        const detail =
          `${quick ? 'quick' : 'full'}; ${c.label}: width ${backbone.config.width}, depth ${backbone.config.depth}, ` +
          `${backbone.config.tokens} tokens; onnxruntime: ${segments} session${segments === 1 ? '' : 's'} (gated block segments), ${segments} run${segments === 1 ? '' : 's'} per forward; ${rounds} alternating rounds of ≥ ${minCpuMs} ms CPU; images per CPU-second: ` +
          `onnxruntime ${fmt(ort)} [${ortRates.map((x) => fmt(x)).join(', ')}], tfjs ${fmt(tfjs)} [${tfjsRates.map((x) => fmt(x)).join(', ')}], ` +
          (typeof torch === 'string' ? torch : `PyTorch ${torch.version} ${fmt(torch.rate)} [${torch.rounds.map((x) => fmt(x)).join(', ')}] (${torch.note})`);
        rows.push(result(`P9 ${c.label}: onnxruntime ÷ tfjs forward images per CPU-second`, ort / tfjs, null, detail));
        if (typeof torch !== 'string') {
          rows.push(result(`P9 ${c.label}: onnxruntime ÷ PyTorch forward images per CPU-second (1 thread)`, ort / torch.rate, { op: '>=', value: 1.5 }, detail));
        }
      } finally {
        await detachNative(backbone);
        backbone.dispose();
      }
    }
    return rows;
  },
};

export default bench;
