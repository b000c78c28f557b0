/**
 * P11 — memory with a ViT-B/16 backbone loaded (random weights in the Hugging Face layout, written
 * to a temporary folder): each runtime kind loads it in a fresh process (bench/lib/load-rss.ts,
 * with the environment `npm start` gives it: glibc's default, dynamic mmap threshold) and runs one
 * batch-1 forward, so every weight has been read. Rows: the peak RSS above the process's base
 * (Node, tfjs, onnxruntime's binding: what any process pays before weights) ÷ the weights' float32
 * bytes, for a serving runtime (onnxruntime only, weight files as `npm start` uses them: goal ≤ 1.3)
 * and, without a goal, the same with ENGINE_WEIGHTS_DIR=off, a training runtime (onnxruntime + the
 * tfjs copy training needs) and tfjs alone. The detail adds a batch-8 forward's peak. Quick mode
 * loads 4 of the 12 blocks.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { writeTinyBackboneDir } from '../../test/helpers/tiny-backbone.js';
import type { Bench, BenchResult } from '../lib/types.js';
import { fmt, result } from '../lib/util.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const run = promisify(execFile);
const MB = 1e6;

interface Measured {
  base: number;
  peak: number;
  steady: number;
  file: number;
  peak8: number;
  steady8: number;
  weights: number;
  engine: string;
}

const bench: Bench = {
  id: 'P11',
  title: 'memory with ViT-B/16 loaded: peak RSS above the process base ÷ weight bytes',
  async run({ quick, log }) {
    const depth = quick ? 4 : 12;
    const dir = await mkdtemp(path.join(os.tmpdir(), 'dtl-p11-'));
    const rows: BenchResult[] = [];
    try {
      await writeTinyBackboneDir(dir, { width: 768, depth, heads: 12, mlpDim: 3072, imageSize: 224, patchSize: 16, seed: 1 });
      // Weight files (ENGINE_WEIGHTS_DIR, the default): 'first' starts on an empty folder and
      // writes them, 'restart' is the next process on that folder; 'files' a fresh folder again.
      const modes = [
        ['serve', 'first', 'serving runtime (onnxruntime only), first start'],
        ['serve', 'restart', 'serving runtime (onnxruntime only), restart'],
        ['serve', 'off', 'serving runtime, ENGINE_WEIGHTS_DIR=off (weights in onnxruntime\'s heap)'],
        ['train', 'files', 'training runtime (onnxruntime + tfjs copy)'],
        ['tfjs', 'off', 'tfjs only (BACKBONE_ENGINE=tfjs)'],
      ] as const;
      const reused = await mkdtemp(path.join(os.tmpdir(), 'dtl-p11-weights-'));
      for (const [mode, files, label] of modes) {
        log(`P11: ${label}`);
        const weightsDir = files === 'off' ? 'off' : files === 'files' ? await mkdtemp(path.join(os.tmpdir(), 'dtl-p11-weights-')) : reused;
        const { stdout } = await run(process.execPath, ['--expose-gc', '--import', 'tsx', path.join(here, '../lib/load-rss.ts'), dir, mode, weightsDir], {
          env: process.env,
          timeout: 600_000,
          maxBuffer: 1 << 20,
        });
        if (files === 'files' || files === 'restart') await rm(weightsDir, { recursive: true, force: true });
        const m = JSON.parse(stdout) as Measured;
        const b8 = Number.isFinite(m.peak8)
          ? `; then a batch-8 forward: peak ${fmt(m.peak8 / MB)} MB, steady ${fmt(m.steady8 / MB)} MB (activations, kept by malloc between runs: peak above base ÷ weights ${fmt((m.peak8 - m.base) / m.weights)})`
          : '';
        const detail =
          `${quick ? 'quick' : 'full'}; ViT-B/16@224 with ${depth} of 12 blocks, ${fmt(m.weights / MB)} MB of float32 weights, engine ${m.engine}, weight files ${files}; ` +
          `RSS after the load and a batch-1 forward (every weight read): base ${fmt(m.base / MB)} MB before loading, peak ${fmt(m.peak / MB)} MB, steady ${fmt(m.steady / MB)} MB, ` +
          `of which file-backed above the base ${fmt(m.file / MB)} MB (steady above base ÷ weights ${fmt((m.steady - m.base) / m.weights)})${b8}; ` +
          `MALLOC_MMAP_THRESHOLD_ ${process.env.MALLOC_MMAP_THRESHOLD_ ?? 'unset (glibc default)'}.`;
        log(detail);
        const goal = mode === 'serve' && files !== 'off' ? ({ op: '<=', value: 1.3 } as const) : null;
        rows.push(result(`P11 ${label}: peak RSS above base ÷ weights`, (m.peak - m.base) / m.weights, goal, detail));
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    return rows;
  },
};

export default bench;
