/**
 * `dtl-host train` as a user runs it: a child process on a tiny backbone folder and a shapes data
 * set given as a directory (with train/val/test splits) and as a zip; the written adapter loads,
 * carries the service's metadata, and scores ≥ 90 % on held-out images through `dtl-host predict`.
 * Also the usage/errors contract and the progress formatting.
 */
import { execFile } from 'node:child_process';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatDuration, formatEpoch, ProgressReporter } from '../../src/cli/progress.js';
import { initBackend, loadAdapter, loadBackboneFromDir, type Backbone } from '../../src/model/index.js';
import type { EpochProgress } from '../../src/train/trainer.js';
import { assignSplits, makeShapesDataset, zipClassFolders, type DatasetImage } from '../helpers/datasets.js';
import { makeTempDir } from '../helpers/db.js';
import { writeTinyBackboneDir } from '../helpers/tiny-backbone.js';
import { TINY } from '../train/helpers.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const run = promisify(execFile);

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function cli(args: string[], cwd: string): Promise<Result> {
  try {
    const { stdout, stderr } = await run(process.execPath, [path.join(ROOT, 'bin/dtl-host.js'), ...args], {
      cwd,
      env: { ...process.env, TFJS_BACKEND: 'wasm' },
      timeout: 120_000,
      maxBuffer: 16 << 20,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** A failure is exactly one line on stderr, no stack trace, nothing on stdout. */
function expectOneLineError(r: Result, code: number, pattern: RegExp): void {
  expect(r.code, r.stderr).toBe(code);
  expect(r.stdout).toBe('');
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines[lines.length - 1]).toMatch(pattern);
  expect(lines.filter((l) => l.startsWith('dtl-host train:'))).toHaveLength(1);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

interface Summary {
  out: string;
  bytes: number;
  labels: string[];
  backbone: { identity: string };
  data: { form: string; images: Record<string, number>; problems: number };
  hyperparameters: Record<string, unknown>;
  metrics: {
    accuracy: number;
    evaluatedOn: string;
    valAccuracy: number;
    testAccuracy: number | null;
    bestEpoch: number;
    epochsRun: number;
    epochsPlanned: number;
    trainSeconds: number;
    wallSeconds: number;
  };
}

const LABELS = ['circle', 'cross', 'square', 'triangle'];
// The recipe the service's end-to-end test uses on this backbone (small data set: a higher lr).
// Explicit lr and variant: these tests train one recipe (the search has its own test below).
const RECIPE = ['--epochs', '20', '--warmup-epochs', '1', '--batch-size', '16', '--lr', '1e-2', '--variant', 'dtl', '--patience', '6'];

let dir: string;
let backboneDir: string;
let backbone: Backbone;
let heldOut: DatasetImage[];
let heldOutFiles: string[];

beforeAll(async () => {
  await initBackend('wasm');
  dir = await makeTempDir('dtl-cli-train');
  backboneDir = path.join(dir, 'backbone');
  await writeTinyBackboneDir(backboneDir, TINY);
  backbone = await loadBackboneFromDir(backboneDir);

  const images = await makeShapesDataset({ classes: 4, perClass: 30, size: 40, seed: 3 });
  // As a directory with split folders…
  for (const img of assignSplits(images, { val: 5, test: 5 })) {
    const d = path.join(dir, 'shapes-dir', img.split ?? 'train', img.label);
    await mkdir(d, { recursive: true });
    await writeFile(path.join(d, img.name), img.data);
  }
  // …and as a zip of class folders (the trainer holds out its own validation images).
  await writeFile(path.join(dir, 'shapes.zip'), await zipClassFolders(images));

  heldOut = await makeShapesDataset({ classes: 4, perClass: 10, size: 40, seed: 901 });
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

/** The file exists, loads against the backbone, and carries the service's `dtl` metadata. */
async function expectAdapterFile(summary: Summary, seed: number): Promise<void> {
  const bytes = await readFile(summary.out);
  expect(bytes.length).toBe(summary.bytes);
  const { adapter, meta } = loadAdapter(bytes, backbone.config);
  adapter.dispose();
  expect(meta).toMatchObject({
    labels: LABELS,
    backbone: { identity: backbone.identity, width: 32, depth: 4 },
    hyperparameters: { seed, lr: 1e-2, epochs: 20 },
    metrics: { accuracy: summary.metrics.accuracy, bestEpoch: summary.metrics.bestEpoch, epochsRun: summary.metrics.epochsRun },
  });
  expect(typeof (meta as { trainedAt?: unknown }).trainedAt).toBe('string');
}

describe('dtl-host train', () => {
  it('trains from a directory with train/val/test folders: progress per epoch, JSON summary, adapter scores ≥ 90 % held out', async () => {
    const out = path.join(dir, 'from-dir.safetensors');
    const r = await cli(['train', '--backbone', backboneDir, '--data', path.join(dir, 'shapes-dir'), '--out', out, '--seed', '1', ...RECIPE], dir);
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout) as Summary;
    expect(summary.out).toBe(out);
    expect(summary.labels).toEqual(LABELS);
    expect(summary.data).toMatchObject({ form: 'dir-folders', images: { train: 80, val: 20, test: 20, total: 120 }, problems: 0 });
    expect(summary.metrics.evaluatedOn).toBe('test');
    expect(summary.metrics.testAccuracy).toBe(summary.metrics.accuracy);
    expect(summary.metrics.valAccuracy).toBeGreaterThan(0);
    expect(summary.metrics.epochsRun).toBeGreaterThanOrEqual(1);
    expect(summary.metrics.epochsPlanned).toBe(21);
    expect(summary.metrics.wallSeconds).toBeGreaterThanOrEqual(summary.metrics.trainSeconds);
    expect(summary.hyperparameters).toMatchObject({ epochs: 20, warmupEpochs: 1, batchSize: 16, lr: 1e-2, patience: 6, seed: 1, variant: 'dtl' });

    // stderr is no terminal here: one plain line per epoch, no carriage returns.
    const epochs = r.stderr.split('\n').filter((l) => l.startsWith('epoch'));
    expect(epochs).toHaveLength(summary.metrics.epochsRun);
    epochs.forEach((l, i) => expect(l).toMatch(new RegExp(`^epoch +${i + 1}/21  loss \\d+\\.\\d{4}  train [\\d.]+%  val [\\d.]+%  lr \\S+  \\d+ img/s  ETA \\d+:\\d\\d$`)));
    expect(r.stderr).not.toContain('\r');

    await expectAdapterFile(summary, 1);
    expect(await heldOutAccuracy(out)).toBeGreaterThanOrEqual(0.9);
  });

  it('without --lr / --variant it searches and prints the search as it goes; the summary records it', async () => {
    const out = path.join(dir, 'searched.safetensors');
    const args = ['--epochs', '2', '--warmup-epochs', '0', '--batch-size', '16', '--budget', 'fast', '--seed', '1'];
    const r = await cli(['train', '--backbone', backboneDir, '--data', path.join(dir, 'shapes-dir'), '--out', out, ...args], dir);
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout) as Summary & { metrics: { search: { candidates: unknown[]; chosen: { lr: number; variant: string } } } };
    const { search } = summary.metrics;
    expect(search.candidates).toHaveLength(8);
    expect(summary.hyperparameters).toMatchObject(search.chosen);
    const lines = r.stderr.split('\n');
    expect(lines).toContain('searching 8 recipes (lr 0.0003, 0.003, 0.03, 0.3 × dtl, dtl+; budget fast; rungs after epochs 2)');
    expect(lines.filter((l) => /^ {2}rung 1: (dtl |dtl\+) lr \S+ +val [\d.]+% \(epoch \d+\)/.test(l))).toHaveLength(8);
    expect(lines.filter((l) => l.startsWith('chose '))).toEqual([expect.stringMatching(new RegExp(`^chose ${search.chosen.variant.replace('+', '\\+')} lr ${search.chosen.lr} \\(val `))]);
    expect(lines.filter((l) => l.startsWith('epoch'))[0]).toMatch(/^epoch 1\/2 {2}8 candidates, leader (dtl|dtl\+) lr \S+ {2}loss /);
  });

  it('trains from a zip with --hparams (flags override it), default --out, quiet', async () => {
    const work = path.join(dir, 'work');
    await mkdir(work);
    const hparams = JSON.stringify({ seed: 2, epochs: 3, lr: 1e-2 });
    const r = await cli(['train', '--backbone', backboneDir, '--data', path.join(dir, 'shapes.zip'), '--hparams', hparams, '--quiet', ...RECIPE], work);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    const summary = JSON.parse(r.stdout) as Summary;
    expect(summary.out).toBe(path.join(work, 'adapter.safetensors'));
    expect(await readdir(work)).toEqual(['adapter.safetensors']);
    expect(summary.data).toMatchObject({ form: 'zip-folders', images: { unassigned: 120, total: 120 } });
    expect(summary.metrics.evaluatedOn).toBe('val');
    expect(summary.metrics.testAccuracy).toBeNull();
    expect(summary.hyperparameters).toMatchObject({ seed: 2, epochs: 20 });
    await expectAdapterFile(summary, 2);
    expect(await heldOutAccuracy(summary.out)).toBeGreaterThanOrEqual(0.9);
  });

  describe('errors: one line on stderr, no stack trace', () => {
    const data = () => path.join(dir, 'shapes.zip');
    it.each([
      [['--lr', 'fast'], /^dtl-host train: --lr must be a number, got 'fast' \(see 'dtl-host train --help'\)$/],
      [['--lr', '5'], /^dtl-host train: invalid hyperparameters: --lr: .*<=1/],
      [['--batch-size', '2.5'], /--batch-size: .*int/i],
      [['--variant', 'lora'], /--variant: .*"dtl"\|"dtl\+"/],
      [['--augment', 'rotate'], /--augment: /],
      [['--hparams', '{"epochs": 0}'], /--hparams epochs: .*>=1/],
      [['--hparams', '[1]'], /--hparams must be a JSON object/],
      [['--hparams', '{"momentum": 0.9}'], /--hparams \(root\): Unrecognized key: "momentum"/],
      [['--frobnicate', '1'], /Unknown option '--frobnicate'/],
      [['--policy', 'maybe'], /--policy must be 'skip' or 'reject'/],
      // Checked against the backbone once it is loaded: still a bad flag.
      [['--add-blocks', '2,9'], /invalid hyperparameters: addBlocks names block 9, but the backbone has 4 blocks/],
    ])('%j → exit 2', async (flags, pattern) => {
      const r = await cli(['train', '--backbone', backboneDir, '--data', data(), ...flags], dir);
      expectOneLineError(r, 2, pattern);
    });

    it('missing required flags → exit 2', async () => {
      expectOneLineError(await cli(['train', '--data', data()], dir), 2, /--backbone DIR is required/);
      expectOneLineError(await cli(['train', '--backbone', backboneDir], dir), 2, /--data ZIP_OR_DIR is required/);
    });

    it('missing data path, backbone or output folder → exit 1 naming it; nothing written', async () => {
      const missing = path.join(dir, 'no-such-data');
      expectOneLineError(await cli(['train', '--backbone', backboneDir, '--data', missing], dir), 1, new RegExp(`data set '${missing}' not found \\(not_found\\)$`));
      expectOneLineError(await cli(['train', '--backbone', path.join(dir, 'nope'), '--data', data()], dir), 1, /backbone folder .*nope' has no model\.safetensors \(invalid_backbone\)$/);
      const out = path.join(dir, 'no-folder', 'a.safetensors');
      expectOneLineError(await cli(['train', '--backbone', backboneDir, '--data', data(), '--out', out], dir), 1, /output folder .*no-folder' not found/);
      expect(await readdir(dir)).not.toContain('adapter.safetensors');
    });

    it('a data set that is not one → exit 1 with the ingest code', async () => {
      const r = await cli(['train', '--backbone', backboneDir, '--data', path.join(dir, 'held-out'), '--quiet'], dir);
      expectOneLineError(r, 1, /a data set needs at least 2 classes.*\(invalid_dataset\)$/);
    });

    it('--help lists every hyperparameter flag and exits 0', async () => {
      const r = await cli(['train', '--help'], dir);
      expect(r.code).toBe(0);
      for (const flag of ['--epochs', '--lr', '--batch-size', '--rank', '--variant', '--kernel', '--seed', '--add-blocks', '--patience', '--augment', '--hparams']) {
        expect(r.stdout).toContain(flag);
      }
    });
  });
});

describe('progress output', () => {
  const p: EpochProgress = {
    epoch: 3,
    epochs: 12,
    lr: 0.00095,
    trainLoss: 0.41234,
    trainAccuracy: 0.875,
    valLoss: 0.5,
    valAccuracy: 0.9,
    bestEpoch: 3,
    bestValAccuracy: 0.9,
    imagesPerSecond: 312.4,
    epochSeconds: 2,
    etaSeconds: 3725,
    cache: { computed: 0, hits: 0, storedRows: 0, storedBytes: 0 },
  };

  it('formats an epoch with and without a bar', () => {
    expect(formatEpoch(p)).toBe('epoch  3/12  loss 0.4123  train 87.5%  val 90.0%  lr 9.50e-4  312 img/s  ETA 1:02:05');
    expect(formatEpoch(p, 12)).toContain('[###.........]');
    expect([formatDuration(0), formatDuration(75), formatDuration(NaN)]).toEqual(['0:00', '1:15', '?']);
  });

  it('redraws one line with \\r on a terminal, writes plain lines elsewhere', () => {
    const chunks: string[] = [];
    const tty = new ProgressReporter({ write: (c: string) => chunks.push(c), isTTY: true, columns: 200 });
    tty.epoch(p);
    tty.epoch({ ...p, epoch: 4 });
    tty.note('done');
    expect(chunks.join('')).toBe(`\r${formatEpoch(p, 20)}\x1b[K\r${formatEpoch({ ...p, epoch: 4 }, 20)}\x1b[K\ndone\n`);

    const lines: string[] = [];
    const plain = new ProgressReporter({ write: (c: string) => lines.push(c), isTTY: false });
    plain.epoch(p);
    plain.note('done');
    expect(lines).toEqual([`${formatEpoch(p)}\n`, 'done\n']);

    const narrow: string[] = [];
    new ProgressReporter({ write: (c: string) => narrow.push(c), isTTY: true, columns: 40 }).epoch(p);
    expect(narrow[0].replace('\x1b[K', '').length).toBeLessThanOrEqual(40);
  });
});
