import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors.js';
import { HELD_OUT_CLASSES, PRETRAIN_CLASSES, indicesOfClasses, loadFashionMnist, parseIdxImages, parseIdxLabels } from '../../scripts/fashion-mnist.js';
import { idxImages, idxLabels, writeFakeFashionMnist } from './idx-fixture.js';

async function expectCode(p: Promise<unknown> | (() => unknown), code: string, message?: RegExp): Promise<void> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).code).toBe(code);
    if (message) expect((err as AppError).message).toMatch(message);
    return;
  }
  throw new Error('expected an AppError');
}

describe('IDX reader', () => {
  it('parses images and labels', () => {
    const img = parseIdxImages(idxImages(3, 4, (i, y, x) => i * 16 + y * 4 + x));
    expect([img.count, img.rows, img.cols]).toEqual([3, 4, 4]);
    expect(img.pixels.length).toBe(48);
    expect(img.pixels[16 + 5]).toBe(21);
    expect(Array.from(parseIdxLabels(idxLabels([0, 9, 3])))).toEqual([0, 9, 3]);
  });

  it('rejects malformed files with invalid_dataset', async () => {
    const good = idxImages(2, 4, () => 1);
    await expectCode(() => parseIdxImages(good.subarray(0, 10)), 'invalid_dataset', /too short/);
    await expectCode(() => parseIdxImages(good.subarray(0, good.length - 1)), 'invalid_dataset', /payload/);
    const wrongType = Buffer.from(good);
    wrongType[2] = 0x0d; // float
    await expectCode(() => parseIdxImages(wrongType), 'invalid_dataset', /unsigned bytes/);
    await expectCode(() => parseIdxImages(idxLabels([1, 2, 3, 4, 5, 6, 7, 8, 9, 0])), 'invalid_dataset', /dimensions/);
    await expectCode(() => parseIdxLabels(idxLabels([1, 10])), 'invalid_dataset', /label 10/);
  });

  it('keeps the pretraining and held-out classes disjoint and complete', () => {
    const all = [...PRETRAIN_CLASSES, ...HELD_OUT_CLASSES].sort((a, b) => a - b);
    expect(all).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(indicesOfClasses(Uint8Array.from([6, 0, 7, 1, 9]), HELD_OUT_CLASSES)).toEqual([0, 2, 4]);
  });
});

describe('loadFashionMnist', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fmnist-'));
    await writeFakeFashionMnist(path.join(dir, 'ok'), { train: 3, test: 2 });
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads gzip’d splits from a folder', async () => {
    const train = await loadFashionMnist('train', path.join(dir, 'ok'));
    const test = await loadFashionMnist('t10k', path.join(dir, 'ok'));
    expect(train.count).toBe(30);
    expect(test.count).toBe(20);
    expect(train.labels.length).toBe(30);
    expect(train.rows).toBe(28);
    expect(train.labels[13]).toBe(3);
  });

  it('says how to install the data when it is missing', async () => {
    await expectCode(loadFashionMnist('train', path.join(dir, 'nowhere')), 'invalid_dataset', /apt-get install dataset-fashion-mnist/);
  });

  it('rejects a split whose label count disagrees with its image count', async () => {
    const bad = path.join(dir, 'bad');
    await writeFakeFashionMnist(bad, { train: 2, test: 1 });
    await writeFile(path.join(bad, 'train-labels-idx1-ubyte'), idxLabels([1, 2, 3]));
    // The plain file is only used when the .gz is absent.
    await rm(path.join(bad, 'train-labels-idx1-ubyte.gz'));
    await expectCode(loadFashionMnist('train', bad), 'invalid_dataset', /20 images but 3 labels/);
  });
});
