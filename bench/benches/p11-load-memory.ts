/**
 * P11 — memory with a ViT-B/16 backbone loaded (random weights in the Hugging Face layout, written
 * to a temporary folder): each runtime kind loads it in a fresh process (bench/lib/load-rss.ts,
 * with the environment `npm start` gives it: glibc's default, dynamic mmap threshold). Rows: the peak RSS above
 * the process's base (Node, tfjs, onnxruntime's binding: what any process pays before weights) ÷
 * the weights' float32 bytes, for a serving runtime (onnxruntime only: goal ≤ 1.3) and, without
 * a goal, a training runtime (onnxruntime + the tfjs copy training needs) and tfjs alone. Quick
 * mode loads 4 of the 12 blocks.
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
      const modes = [
        ['serve', 'serving runtime (onnxruntime only)'],
        ['train', 'training runtime (onnxruntime + tfjs copy)'],
        ['tfjs', 'tfjs only (BACKBONE_ENGINE=tfjs)'],
      ] as const;
      for (const [mode, label] of modes) {
        log(`P11: ${label}`);
        const { stdout } = await run(process.execPath, ['--expose-gc', '--import', 'tsx', path.join(here, '../lib/load-rss.ts'), dir, mode], {
          env: process.env,
          timeout: 600_000,
          maxBuffer: 1 << 20,
        });
        const m = JSON.parse(stdout) as Measured;
        const detail =
          `${quick ? 'quick' : 'full'}; ViT-B/16@224 with ${depth} of 12 blocks, ${fmt(m.weights / MB)} MB of float32 weights, engine ${m.engine}; ` +
          `RSS: base ${fmt(m.base / MB)} MB before loading, peak ${fmt(m.peak / MB)} MB, steady ${fmt(m.steady / MB)} MB ` +
          `(steady above base ÷ weights ${fmt((m.steady - m.base) / m.weights)}); MALLOC_MMAP_THRESHOLD_ ${process.env.MALLOC_MMAP_THRESHOLD_ ?? 'unset (glibc default)'}.`;
        log(detail);
        rows.push(result(`P11 ${label}: peak RSS above base ÷ weights`, (m.peak - m.base) / m.weights, mode === 'serve' ? { op: '<=', value: 1.3 } : null, detail));
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    return rows;
  },
};

export default bench;
