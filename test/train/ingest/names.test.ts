/**
 * Issue 11, item 10, inside uploads: labels and file names go through the one text rule
 * (src/text.ts). Bidirectional and control characters are problems under the upload's policy
 * (reported and skipped, or the upload rejected), shown escaped; names are compared in NFC.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ingestDirectory } from '../../../src/train/ingest/index.js';
import { makeShapesDataset, makeZip, type ZipItem } from '../../helpers/datasets.js';
import { ingestBody, ingestError, makeTmpRoot } from './helpers.js';

const tmp = makeTmpRoot();
afterAll(() => tmp.cleanup());
afterEach(() => expect(tmp.leftovers()).toEqual([]));

const RLO = '\u202E';
let png: Buffer;
let good: ZipItem[];

beforeAll(async () => {
  const imgs = await makeShapesDataset({ classes: 2, perClass: 2, size: 12, seed: 5 });
  png = imgs[0].data;
  good = imgs.map((img, i) => ({ name: `${img.label}/${i}.png`, data: img.data }));
});

describe('bidirectional and control characters in uploads', () => {
  it("file and folder names: reported as invalid_name under 'skip' (escaped), the rest kept", async () => {
    const zip = await makeZip([...good, { name: `circle/invoice${RLO}gnp.exe`, data: png }, { name: `do\u2066g/1.png`, data: png }, { name: 'x\u200Fy/1.png', data: png }]);
    const r = await ingestBody(zip, tmp.dir);
    expect(r.labels).toEqual(['circle', 'square']);
    expect(r.totals.total).toBe(4);
    expect(r.problems.map((p) => [p.path, p.code, p.message])).toEqual([
      ['circle/invoice\\u{202E}gnp.exe', 'invalid_name', 'entry name contains a bidirectional control character (U+202E); rename it and zip again'],
      ['do\\u{2066}g/1.png', 'invalid_name', 'entry name contains a bidirectional control character (U+2066); rename it and zip again'],
      ['x\\u{200F}y/1.png', 'invalid_name', 'entry name contains a bidirectional control character (U+200F); rename it and zip again'],
    ]);
    for (const p of r.problems) expect(p.path + p.message).not.toMatch(/[\u202A-\u202E\u2066-\u2069\u200E\u200F]/);
  });

  it("under 'reject' such a name fails the upload with invalid_dataset", async () => {
    const zip = await makeZip([...good, { name: `circle/a${RLO}b.png`, data: png }]);
    const err = await ingestError(ingestBody(zip, tmp.dir, { policy: 'reject' }));
    expect(err.code).toBe('invalid_dataset');
    expect(err.message).toBe('data set rejected: 1 problem: circle/a\\u{202E}b.png (invalid_name: entry name contains a bidirectional control character (U+202E); rename it and zip again)');
  });

  it('labels from a manifest and from JSONL are refused as invalid_label, shown escaped', async () => {
    const csv = ['path,label', `circle/0.png,cir${RLO}cle`, 'circle/1.png,circle', 'square/2.png,square', 'square/3.png,square', 'circle/0.png,x'].join('\n');
    const r = await ingestBody(await makeZip([...good, { name: 'labels.csv', data: Buffer.from(csv) }]), tmp.dir);
    expect(r.labels).toEqual(['circle', 'square']);
    const bad = r.problems.find((p) => p.code === 'invalid_label')!;
    expect(bad.message).toContain('contains a bidirectional control character (U+202E)');
    expect(bad.message).toContain('cir\\u{202E}cle');

    const line = (label: string) => JSON.stringify({ image: png.toString('base64'), label });
    const jsonl = [line('a'), line('a'), line('b'), line('b'), line(`b\u061C`)].join('\n');
    const j = await ingestBody(jsonl, tmp.dir, { contentType: 'application/x-ndjson' });
    expect(j.labels).toEqual(['a', 'b']);
    expect(j.problems.map((p) => [p.path, p.code])).toEqual([['line 5', 'invalid_label']]);
    expect(j.problems[0].message).toContain('(U+061C)');
  });
});

describe('NFC', () => {
  it('a manifest typed in NFC finds files zipped with NFD names (macOS), and their folder labels merge', async () => {
    const nfd = 'cafe\u0301';
    const nfc = 'café';
    const items: ZipItem[] = [
      { name: `${nfd}/1.png`, data: png },
      { name: `${nfc}/2.png`, data: png },
      { name: 'tea/1.png', data: png },
      { name: 'tea/2.png', data: png },
    ];
    expect((await ingestBody(await makeZip(items), tmp.dir)).counts[0].total).toBe(2);
    const csv = ['path,label', `${nfc}/1.png,${nfc}`, `${nfc}/2.png,${nfd}`, 'tea/1.png,tea', 'tea/2.png,tea'].join('\n');
    const r = await ingestBody(await makeZip([...items, { name: 'labels.csv', data: Buffer.from(csv) }]), tmp.dir);
    expect(r.problems).toEqual([]);
    expect(r.labels).toEqual([nfc, 'tea']);
    expect(r.counts[0].total).toBe(2);
  });

  it('a local directory: NFD names on disk are read (and matched) in NFC; bidi names are reported', async () => {
    const dir = path.join(tmp.dir, 'dir');
    try {
      for (const [p, data] of [[`cafe\u0301/1.png`, png], ['tea/1.png', png], ['tea/2.png', png], [`tea/x${RLO}.png`, png]] as const) {
        await mkdir(path.dirname(path.join(dir, p)), { recursive: true });
        await writeFile(path.join(dir, p), data);
      }
      await writeFile(path.join(dir, 'labels.csv'), ['path,label', 'café/1.png,café', 'café/1.png,x', 'tea/1.png,tea', 'tea/2.png,tea'].join('\n'));
      const r = await ingestDirectory({ dir, imageSize: 8, policy: 'skip', limits: { minPerClass: 1 } });
      expect(r.labels).toEqual(['café', 'tea']);
      expect(r.problems.map((p) => [p.path, p.code])).toEqual([
        ['tea/x\\u{202E}.png', 'invalid_name'],
        ['labels.csv:3', 'duplicate_path'],
      ]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
