/** Shared plumbing for the trainer tests: a tiny backbone and a learnable prepared data set. */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ingestUpload, type PreparedDataset } from '../../src/train/ingest/index.js';
import { assignSplits, bufferStream, makeShapesDataset, zipClassFolders } from '../helpers/datasets.js';
import type { TinyBackboneOptions } from '../helpers/tiny-backbone.js';

/** The tiny ViT the training tests use: fast on 2 CPU cores, big enough to learn shapes. */
export const TINY: TinyBackboneOptions = { width: 32, depth: 4, heads: 2, mlpDim: 64, patchSize: 8, imageSize: 32, seed: 11 };

/** A shapes data set (classes × perClass) ingested at 32×32; optional test split per class. */
export async function shapesPrepared(opts: { classes: number; perClass: number; seed: number; test?: number; val?: number }): Promise<PreparedDataset> {
  let images = await makeShapesDataset({ classes: opts.classes, perClass: opts.perClass, size: 32, seed: opts.seed });
  const splits = opts.test !== undefined || opts.val !== undefined;
  if (splits) images = assignSplits(images, { val: opts.val ?? 0, test: opts.test ?? 0 });
  const zip = await zipClassFolders(images, { splits });
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'dtl-train-test-'));
  try {
    const r = await ingestUpload({ source: bufferStream(zip), tmpDir: tmp, maxBytes: 64 << 20, imageSize: 32, policy: 'reject' });
    return r.prepared;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}
