/**
 * `dtl-host train` on a Swin backbone folder (a tiny random Swin in the Hugging Face layout), as a
 * child process: it trains on a shapes data set with the Swin defaults (reads in the stages that
 * add, swinAutoRank), also through the recipe search (DTL+ candidates: one conv per stage), and the
 * written adapter file loads and predicts well above chance through `dtl-host predict`.
 */
import { execFile } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend, loadAdapter, loadBackboneFromDir, type Backbone } from '../../src/model/index.js';
import { makeShapesDataset, zipClassFolders, type DatasetImage } from '../helpers/datasets.js';
import { makeTempDir } from '../helpers/db.js';
import { tinySwinFiles } from '../helpers/tiny-swin.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const run = promisify(execFile);

async function cli(args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [path.join(ROOT, 'bin/dtl-host.js'), ...args], {
      cwd,
      env: { ...process.env, TFJS_BACKEND: 'wasm' },
      timeout: 180_000,
      maxBuffer: 16 << 20,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

interface Summary {
  out: string;
  hyperparameters: Record<string, unknown>;
  metrics: { accuracy: number; epochsRun: number; search?: { candidates: unknown[]; chosen: { lr: number; variant: string } } };
}

let dir: string;
let backboneDir: string;
let backbone: Backbone;
let heldOut: DatasetImage[];
let heldOutFiles: string[];

beforeAll(async () => {
  await initBackend('wasm');
  dir = await makeTempDir('dtl-cli-train-swin');
  backboneDir = path.join(dir, 'swin');
  // 32 px, patch 4: stages of 8×8 / 4×4 / 2×2 tokens, 16 / 32 / 64 wide.
  const files = tinySwinFiles({ embedDim: 16, depths: [2, 2, 2], heads: [1, 2, 4], windowSize: 4, patchSize: 4, imageSize: 32, seed: 7 });
  await mkdir(backboneDir, { recursive: true });
  await writeFile(path.join(backboneDir, 'model.safetensors'), files.model);
  await writeFile(path.join(backboneDir, 'config.json'), files.config);
  backbone = await loadBackboneFromDir(backboneDir);
  await writeFile(path.join(dir, 'shapes.zip'), await zipClassFolders(await makeShapesDataset({ classes: 4, perClass: 24, size: 32, seed: 3 })));
  heldOut = await makeShapesDataset({ classes: 4, perClass: 8, size: 32, seed: 901 });
  await mkdir(path.join(dir, 'held-out'));
  heldOutFiles = await Promise.all(
    heldOut.map(async (img, i) => {
      const file = path.join(dir, 'held-out', `${i}.png`);
      await writeFile(file, img.data);
      return file;
    }),
  );
});

afterAll(async () => {
  backbone?.dispose();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Held-out accuracy of an adapter file through `dtl-host predict`. */
async function heldOutAccuracy(adapterFile: string): Promise<number> {
  const r = await cli(['predict', '--backbone', backboneDir, '--adapter', adapterFile, '--top', '1', ...heldOutFiles], dir);
  expect(r.code, r.stderr).toBe(0);
  const predictions = JSON.parse(r.stdout) as Array<{ top: Array<{ label: string }> }>;
  expect(predictions).toHaveLength(heldOut.length);
  return predictions.filter((p, i) => p.top[0].label === heldOut[i].label).length / heldOut.length;
}

describe('dtl-host train on a Swin', () => {
  it('trains one recipe with the Swin defaults; the adapter loads and predicts held-out shapes well above chance', async () => {
    const out = path.join(dir, 'swin-dtl.safetensors');
    const recipe = ['--epochs', '10', '--warmup-epochs', '1', '--batch-size', '16', '--lr', '3e-2', '--variant', 'dtl', '--seed', '1', '--patience', '0'];
    const r = await cli(['train', '--backbone', backboneDir, '--data', path.join(dir, 'shapes.zip'), '--out', out, ...recipe], dir);
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout) as Summary;
    expect(summary.metrics.epochsRun).toBe(11);
    const { adapter, meta } = loadAdapter(await readFile(out), backbone.config);
    // Reads 2..5 (the stages that add), additions 3..5, rank 8 (narrowest read width 32).
    expect(adapter.spec).toMatchObject({ rank: 8, loraBeforeBlocks: [2, 3, 4, 5], addAfterBlocks: [3, 4, 5], fusionKernel: 0 });
    adapter.dispose();
    expect(meta).toMatchObject({ backbone: { identity: backbone.identity } });
    expect(await heldOutAccuracy(out)).toBeGreaterThanOrEqual(0.6); // 4 classes: chance 0.25
  });

  it('the recipe search (DTL and DTL+ candidates) runs on a Swin and its winner predicts', async () => {
    const out = path.join(dir, 'swin-searched.safetensors');
    const args = ['--epochs', '4', '--warmup-epochs', '0', '--batch-size', '16', '--budget', 'fast', '--seed', '1', '--quiet'];
    const r = await cli(['train', '--backbone', backboneDir, '--data', path.join(dir, 'shapes.zip'), '--out', out, ...args], dir);
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout) as Summary;
    expect(summary.metrics.search!.candidates).toHaveLength(8);
    const { adapter } = loadAdapter(await readFile(out), backbone.config);
    expect(adapter.spec.fusionKernel).toBe(summary.metrics.search!.chosen.variant === 'dtl+' ? 3 : 0);
    adapter.dispose();
    expect(await heldOutAccuracy(out)).toBeGreaterThanOrEqual(0.6);
  });
});
