import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend, type Backbone } from '../../src/model/index.js';
import { dtl, serviceDefaults } from '../../eval/methods/dtl.js';
import { linearProbe } from '../../eval/methods/linear-probe.js';
import { DEFAULT_RECIPE } from '../../eval/recipe.js';
import { evalMarkdown, evalSvg } from '../../eval/report.js';
import { runStudy, type MethodResult } from '../../eval/runner.js';
import { tinyBackbone } from '../helpers/tiny-backbone.js';

describe('transfer study runner and report', () => {
  let backbone: Backbone;
  let results: MethodResult[];
  const progress: number[] = [];
  beforeAll(async () => {
    await initBackend('wasm');
    backbone = tinyBackbone({ width: 16, depth: 4, heads: 2, mlpDim: 32, patchSize: 7, imageSize: 28, seed: 2 });
    const before = tf.memory().numTensors;
    results = await runStudy(backbone, {
      tasks: ['shapes', 'count'],
      methods: [linearProbe, serviceDefaults, dtl],
      sizes: { train: 24, test: 12 },
      recipe: { ...DEFAULT_RECIPE, epochs: 1, warmupEpochs: 0, batchSize: 8 },
      memoryBatch: 8,
      seed: 1,
      onProgress: (r) => {
        progress.push(r.length);
      },
    });
    expect(tf.memory().numTensors).toBe(before);
  });
  afterAll(() => backbone.dispose());

  it('sweeps the lr grid on validation, then reports every (task, method)', () => {
    expect(results.map((r) => `${r.task}/${r.method}`)).toEqual(['shapes/linear', 'shapes/service', 'shapes/dtl', 'count/linear', 'count/service', 'count/dtl']);
    expect(progress).toEqual([1, 2, 3, 4, 5, 6]);
    for (const r of results.filter((x) => x.method === 'service')) {
      // No learning rate from the study: one run with the trainer's defaults.
      expect(r.sweep).toEqual([]);
      expect(r.lrChosenByStudy).toBe(false);
      expect(r.lr).toBeGreaterThan(0);
      expect(r.trainImages + r.valImages).toBe(24);
    }
    for (const r of results.filter((x) => x.method !== 'service')) {
      const grid = r.method === 'linear' ? linearProbe.lrGrid : dtl.lrGrid;
      expect(r.sweep.slice(0, grid.length).map((p) => p.lr)).toEqual(grid);
      expect(r.sweep.length).toBeLessThanOrEqual(grid.length + 2);
      const best = Math.max(...r.sweep.map((p) => p.valAcc));
      expect(r.sweep.find((p) => p.lr === r.lr)!.valAcc).toBe(best);
      // The trainer's split: 20 % of each class validates (4–6 images a class → one each).
      expect(r.trainImages + r.valImages).toBe(24);
      expect(r.valImages).toBe(r.classes);
      expect(r.valAcc).toBe(best);
      expect(r.testImages).toBe(12);
      expect(r.testAcc).toBeGreaterThanOrEqual(0);
      expect(r.peakBytes).toBeGreaterThan(0);
      expect(r.trainSeconds).toBeGreaterThan(0);
    }
  });

  it('writes the markdown table and an SVG chart', () => {
    const md = evalMarkdown(results, { command: 'npm run eval -- --test', date: '2026-01-01', machine: 'test', backbone: 'tiny', recipe: 'r', notes: '## Findings\n\nnone' });
    expect(md).toContain('npm run eval -- --test');
    expect(md).toMatch(/\| Linear probe \| [\d.]+ \| [\d.]+ \| \*\*[\d.]+\*\* \|/);
    expect(md).toMatch(/\| DTL \| /);
    expect(md).toMatch(/\| Service defaults \(no hyperparameters\) \| /);
    expect(md).toContain('## What a tenant gets with no hyperparameters');
    expect(md).toMatch(/\| \*\*mean\*\* \| [\d.]+ \| [\d.]+ \| [\d.]+ \| — \| [+-][\d.]+ \| [+-][\d.]+ \| — \|/);
    expect(md).toContain('| shapes | DTL |');
    expect(md).toContain('## Findings');
    const svg = evalSvg(results, 'title <&>');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.trim().endsWith('</svg>')).toBe(true);
    expect(svg).toContain('title &lt;&amp;&gt;');
    // 3 methods × (2 tasks + mean) accuracy bars + 3 memory bars + 3 legend swatches.
    expect(svg.match(/<rect /g)!.length - 1).toBe(3 * 3 + 3 + 3);
  });
});
