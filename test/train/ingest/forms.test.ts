import sharp from 'sharp';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { BackboneConfig } from '../../../src/model/backbone-config.js';
import { decodePrepared, decodeToRgb, encodePrepared, SPLITS, type IngestUploadResult } from '../../../src/train/ingest/index.js';
import {
  assignSplits,
  jsonlStream,
  jsonlText,
  makeShapesDataset,
  makeZip,
  rawRgbPng,
  zipClassFolders,
  zipWithCsvManifest,
  zipWithJsonlManifest,
  type DatasetImage,
} from '../../helpers/datasets.js';
import { ingestBody, makeTmpRoot } from './helpers.js';

const tmp = makeTmpRoot();
afterAll(() => tmp.cleanup());
afterEach(() => expect(tmp.leftovers()).toEqual([]));

// A 16×16 image with four known quadrant colours: at imageSize 16 the resize is the identity.
const KNOWN_COLOURS: [number, number, number][] = [
  [255, 0, 0],
  [0, 255, 0],
  [0, 0, 255],
  [250, 250, 250],
];
function knownPixels(): Uint8Array {
  const px = new Uint8Array(16 * 16 * 3);
  for (let y = 0; y < 16; y++) {
    for (let x = 0; x < 16; x++) {
      const c = KNOWN_COLOURS[(y < 8 ? 0 : 2) + (x < 8 ? 0 : 1)];
      px.set(c, (y * 16 + x) * 3);
    }
  }
  return px;
}

let images: DatasetImage[];
let known: DatasetImage;

beforeAll(async () => {
  const shapes = await makeShapesDataset({ classes: 3, perClass: 5, size: 24, seed: 7 });
  known = { label: 'circle', name: 'known.png', data: await rawRgbPng(16, 16, knownPixels()), split: 'val' };
  images = [...assignSplits(shapes, { val: 1, test: 1 }), known];
});

function exampleOf(r: IngestUploadResult, source: string): Uint8Array {
  const i = r.prepared.sources.indexOf(source);
  expect(i).toBeGreaterThanOrEqual(0);
  const n = 16 * 16 * 3;
  return r.prepared.pixels.subarray(i * n, (i + 1) * n);
}

function expectShapesResult(r: IngestUploadResult, withSplits: boolean, knownSource: string) {
  expect(r.labels).toEqual(['circle', 'square', 'triangle']);
  expect(r.problems).toEqual([]);
  expect(r.prepared.labelIds.length).toBe(16);
  expect(r.prepared.pixels.length).toBe(16 * 16 * 16 * 3);
  if (withSplits) {
    expect(r.counts).toEqual([
      { unassigned: 0, train: 3, val: 2, test: 1, total: 6 },
      { unassigned: 0, train: 3, val: 1, test: 1, total: 5 },
      { unassigned: 0, train: 3, val: 1, test: 1, total: 5 },
    ]);
  } else {
    expect(r.counts.map((c) => [c.unassigned, c.total])).toEqual([[6, 6], [5, 5], [5, 5]]);
  }
  expect(r.totals.total).toBe(16);
  // Label ids agree with the per-label counts.
  const perLabel = [0, 0, 0];
  for (const id of r.prepared.labelIds) perLabel[id]++;
  expect(perLabel).toEqual([6, 5, 5]);
  // The known image's label, split and exact pixels survive.
  const ki = r.prepared.sources.indexOf(knownSource);
  expect(r.labels[r.prepared.labelIds[ki]]).toBe('circle');
  expect(SPLITS[r.prepared.splits[ki]]).toBe(withSplits ? 'val' : 'unassigned');
  expect(Buffer.from(exampleOf(r, r.prepared.sources[ki]))).toEqual(Buffer.from(knownPixels()));
  // And the encoded form round-trips exactly.
  const back = decodePrepared(encodePrepared(r.prepared));
  expect(back.labels).toEqual(r.labels);
  expect(back.counts).toEqual(r.counts);
  expect(Buffer.from(back.pixels)).toEqual(Buffer.from(r.prepared.pixels));
  expect([...back.labelIds]).toEqual([...r.prepared.labelIds]);
  expect([...back.splits]).toEqual([...r.prepared.splits]);
}

describe('accepted forms round-trip', () => {
  it('zip of class folders', async () => {
    const r = await ingestBody(await zipClassFolders(images), tmp.dir, { contentType: 'application/zip' });
    expect(r.form).toBe('zip-folders');
    expectShapesResult(r, false, 'circle/known.png');
    expect(r.upload.bytes).toBeGreaterThan(0);
    expect(r.upload.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it('zip of class folders with train/ val/ test/ splits, wrapped in one folder', async () => {
    const r = await ingestBody(await zipClassFolders(images, { splits: true, wrapper: 'my-data' }), tmp.dir);
    expect(r.form).toBe('zip-folders');
    expectShapesResult(r, true, 'my-data/val/circle/known.png');
  });

  it('zip with labels.csv', async () => {
    const r = await ingestBody(await zipWithCsvManifest(images), tmp.dir, { contentType: 'application/x-zip-compressed' });
    expect(r.form).toBe('zip-manifest-csv');
    expectShapesResult(r, true, 'images/00015-known.png');
  });

  it('zip with labels.jsonl', async () => {
    const r = await ingestBody(await zipWithJsonlManifest(images), tmp.dir);
    expect(r.form).toBe('zip-manifest-jsonl');
    expectShapesResult(r, true, 'images/00015-known.png');
  });

  it('JSONL stream', async () => {
    const r = await ingestBody(jsonlStream(images), tmp.dir, { contentType: 'application/x-ndjson' });
    expect(r.form).toBe('jsonl');
    expectShapesResult(r, true, 'line 16');
    expect(r.prepared.sources[0]).toBe('line 1');
  });

  it('JSONL with data URLs, CRLF line ends, blank lines and integer labels', async () => {
    const a = (await makeShapesDataset({ classes: 2, perClass: 2, size: 20, seed: 1 })).map((img, i) => ({
      image: `data:image/png;base64,${img.data.toString('base64')}`,
      label: i < 2 ? 0 : 1,
    }));
    const body = '\r\n' + a.map((o) => JSON.stringify(o)).join('\r\n\r\n') + '\r\n';
    const r = await ingestBody(body, tmp.dir);
    expect(r.labels).toEqual(['0', '1']);
    expect(r.totals.total).toBe(4);
    expect(r.prepared.sources).toEqual(['line 2', 'line 4', 'line 6', 'line 8']);
  });

  it('same upload, same result (deterministic)', async () => {
    const body = jsonlText(images);
    const [a, b] = [await ingestBody(body, tmp.dir), await ingestBody(body, tmp.dir)];
    expect(Buffer.from(encodePrepared(a.prepared))).toEqual(Buffer.from(encodePrepared(b.prepared)));
  });
});

describe('image handling', () => {
  it('auto-rotates by EXIF, converts grey and alpha to RGB, stretches to size×size', async () => {
    // 32×16: left half red, right half blue; EXIF orientation 6 = rotate 90° clockwise to view.
    const px = new Uint8Array(32 * 16 * 3);
    for (let y = 0; y < 16; y++) for (let x = 0; x < 32; x++) px.set(x < 16 ? [255, 0, 0] : [0, 0, 255], (y * 32 + x) * 3);
    const rotated = await sharp(Buffer.from(px), { raw: { width: 32, height: 16, channels: 3 } })
      .jpeg({ quality: 100 })
      .withMetadata({ orientation: 6 })
      .toBuffer();
    const grey = await sharp(Buffer.alloc(20 * 10, 77), { raw: { width: 20, height: 10, channels: 1 } }).png().toBuffer();
    const rgba = await sharp({ create: { width: 12, height: 12, channels: 4, background: { r: 10, g: 200, b: 30, alpha: 0.5 } } })
      .png()
      .toBuffer();
    const zip = await makeZip([
      { name: 'a/rot.jpg', data: rotated },
      { name: 'a/grey.png', data: grey },
      { name: 'b/rgba.png', data: rgba },
      { name: 'b/webp.webp', data: await sharp(grey).webp({ lossless: true }).toBuffer() },
    ]);
    const r = await ingestBody(zip, tmp.dir);
    expect(r.problems).toEqual([]);
    const rot = exampleOf(r, 'a/rot.jpg');
    // After rotating clockwise the red half is on top, blue at the bottom.
    const at = (buf: Uint8Array, x: number, y: number) => [...buf.subarray((y * 16 + x) * 3, (y * 16 + x) * 3 + 3)];
    const close = (got: number[], want: number[]) => got.every((v, i) => Math.abs(v - want[i]) <= 24);
    expect(close(at(rot, 8, 2), [255, 0, 0])).toBe(true);
    expect(close(at(rot, 8, 13), [0, 0, 255])).toBe(true);
    expect(close(at(rot, 2, 8), [255, 0, 0])).toBe(false);
    expect(new Set(exampleOf(r, 'a/grey.png'))).toEqual(new Set([77]));
    // Alpha is dropped, not composited (resampling a half-transparent image rounds by ±1).
    expect(at(exampleOf(r, 'b/rgba.png'), 5, 5).every((v, i) => Math.abs(v - [10, 200, 30][i]) <= 2)).toBe(true);
    expect(new Set(exampleOf(r, 'b/webp.webp'))).toEqual(new Set([77]));
  });

  it('gives the same pixels as the model preprocessing (no train/serve skew), with each resize filter', async () => {
    const { preprocessImage } = await import('../../../src/model/preprocess.js');
    const imgs = await makeShapesDataset({ classes: 2, perClass: 1, size: 37, seed: 5, format: 'jpeg' });
    const byFilter = new Map<string, number[]>();
    for (const resample of [undefined, 'bilinear', 'bicubic', 'nearest'] as const) {
      const cfg = { imageSize: 16, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], resample } as unknown as BackboneConfig;
      for (const img of imgs) {
        const rgb = await decodeToRgb(img.data, { imageSize: 16, maxPixels: 1e6, resample });
        const norm = await preprocessImage(img.data, cfg);
        const back = Array.from(norm, (v) => Math.round((v * 0.5 + 0.5) * 255));
        expect(back).toEqual([...rgb]);
      }
      byFilter.set(String(resample), [...(await decodeToRgb(imgs[0].data, { imageSize: 16, maxPixels: 1e6, resample }))]);
    }
    // The filter is applied, not ignored: each gives other pixels.
    expect(new Set([...byFilter.values()].map((v) => v.join(','))).size).toBe(4);
  });

  it('merges labels equal after NFC + trim, keeps case-distinct labels apart, skips OS clutter', async () => {
    const img = (await makeShapesDataset({ classes: 1, perClass: 1, size: 16, seed: 3 }))[0].data;
    const zip = await makeZip([
      { name: 'caf\u00e9/1.png', data: img },
      { name: 'cafe\u0301/2.png', data: img }, // NFD spelling of the same label
      { name: 'Dog/1.png', data: img },
      { name: 'dog/1.png', data: img },
      { name: '__MACOSX/dog/._1.png', data: Buffer.from('junk') },
      { name: 'dog/.DS_Store', data: Buffer.from('junk') },
      { name: '.hidden/x.png', data: img },
    ]);
    const r = await ingestBody(zip, tmp.dir);
    expect(r.labels).toEqual(['Dog', 'caf\u00e9', 'dog']);
    expect(r.counts.map((c) => c.total)).toEqual([1, 2, 1]);
    expect(r.problems).toEqual([]);
  });
});
