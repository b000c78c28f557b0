/**
 * A local directory as a data set (`dtl-host train --data DIR`): the same layout rules and the same
 * prepared examples as the zip of that directory; links, clutter and bad files handled as in a zip.
 */
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ingestDirectory, type IngestResult } from '../../../src/train/ingest/index.js';
import { assignSplits, makeShapesDataset, zipClassFolders, type DatasetImage } from '../../helpers/datasets.js';
import { ingestBody, ingestError, makeTmpRoot } from './helpers.js';

const tmp = makeTmpRoot();
afterAll(() => tmp.cleanup());

let images: DatasetImage[];
beforeAll(async () => {
  images = assignSplits(await makeShapesDataset({ classes: 3, perClass: 4, size: 20, seed: 5 }), { val: 1, test: 1 });
});

/** Writes `images` under `root` as `[split/]label/name`. */
async function writeTree(root: string, imgs: DatasetImage[], splits: boolean): Promise<void> {
  for (const img of imgs) {
    const dir = path.join(root, ...(splits ? [img.split ?? 'train'] : []), img.label);
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, img.name), img.data);
  }
}

const ingestDir = (dir: string, policy: 'skip' | 'reject' = 'skip') =>
  ingestDirectory({ dir, imageSize: 16, policy, limits: { minPerClass: 1 } });

/** Examples keyed by source path: pixels, label and split (order-free comparison). */
function bySource(r: IngestResult): Map<string, { label: string; split: number; pixels: number[] }> {
  const n = 16 * 16 * 3;
  return new Map(
    r.prepared.sources.map((s, i) => [
      s,
      { label: r.labels[r.prepared.labelIds[i]], split: r.prepared.splits[i], pixels: [...r.prepared.pixels.subarray(i * n, (i + 1) * n)] },
    ]),
  );
}

describe('ingestDirectory', () => {
  it.each([false, true])('gives the same examples as the zip of the same tree (splits: %s)', async (splits) => {
    const root = path.join(tmp.dir, `tree-${splits}`);
    await writeTree(root, images, splits);
    const fromDir = await ingestDir(root);
    const zip = await zipClassFolders(images, { splits });
    const fromZip = await ingestBody(zip, tmp.dir);
    expect(fromDir.form).toBe('dir-folders');
    expect(fromDir.labels).toEqual(['circle', 'square', 'triangle']);
    expect(fromDir.problems).toEqual([]);
    expect(fromDir.counts).toEqual(fromZip.counts);
    expect(fromDir.totals).toEqual(fromZip.totals);
    expect(fromDir.totals.test).toBe(splits ? 3 : 0);
    expect(bySource(fromDir)).toEqual(bySource(fromZip));
    // Walked in name order: the same candidate order on every machine.
    expect(fromDir.prepared.sources).toEqual([...fromDir.prepared.sources].sort());
  });

  it('looks through one wrapping folder and reads a labels.csv manifest', async () => {
    const root = path.join(tmp.dir, 'manifest');
    const inner = path.join(root, 'mydata');
    await mkdir(path.join(inner, 'img'), { recursive: true });
    const rows = ['path,label'];
    for (const [i, img] of images.entries()) {
      await writeFile(path.join(inner, 'img', `${i}.png`), img.data);
      rows.push(`img/${i}.png,${img.label}`);
    }
    await writeFile(path.join(inner, 'labels.csv'), rows.join('\n'));
    const r = await ingestDir(root);
    expect(r.form).toBe('dir-manifest-csv');
    expect(r.totals.total).toBe(images.length);
    expect(r.prepared.sources[0]).toBe('mydata/img/0.png');
  });

  it('skips clutter; reports bad files, non-UTF-8 names and links to folders; follows links to files', async () => {
    const root = path.join(tmp.dir, 'messy');
    await writeTree(root, images.slice(0, 8), false);
    await writeFile(path.join(root, '.DS_Store'), 'x');
    await writeFile(path.join(root, 'circle', 'notes.txt'), 'not an image');
    await writeFile(path.join(root, 'stray.png'), images[0].data);
    await writeFile(Buffer.concat([Buffer.from(path.join(root, 'circle', 'caf')), Buffer.from([0xe9]), Buffer.from('.png')]), images[0].data);
    await symlink(path.join(root, 'circle'), path.join(root, 'loop'));
    await symlink(path.join(root, 'circle', images[0].name), path.join(root, 'square', 'linked.png'));
    const r = await ingestDir(root);
    expect(r.problems.map((p) => [p.path, p.code])).toEqual([
      ['circle/caf\uFFFD.png', 'invalid_name'],
      ['loop', 'unsupported_entry'],
      ['stray.png', 'unexpected_path'],
      ['circle/notes.txt', 'invalid_image'],
    ]);
    expect(r.prepared.sources).toContain('square/linked.png');
    expect((await ingestError(ingestDir(root, 'reject'))).code).toBe('invalid_dataset');
  });

  it('refuses a missing path, a file, and a single class with clear codes', async () => {
    expect(await ingestError(ingestDir(path.join(tmp.dir, 'nope')))).toMatchObject({ code: 'not_found', message: expect.stringContaining('nope') });
    const file = path.join(tmp.dir, 'file.png');
    await writeFile(file, images[0].data);
    expect((await ingestError(ingestDir(file))).code).toBe('validation_failed');
    const one = path.join(tmp.dir, 'one');
    await writeTree(one, images.filter((i) => i.label === 'circle'), false);
    expect(await ingestError(ingestDir(one))).toMatchObject({ code: 'invalid_dataset', message: expect.stringContaining('at least 2 classes') });
  });
});
