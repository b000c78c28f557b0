/**
 * Issue 11, item 3: archive-wide bounds, enforced from the central directory before any entry is
 * inflated. The probe's bomb — 1,100 entries of (1 MiB − 1) zeros, each under the per-entry ratio
 * check's size floor — used to inflate 1.15 GB (30 s of CPU) before failing; real data sets of
 * PNG/JPEG (which barely compress) and small archives of very compressible images still pass.
 */
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ingestFile, parseIngestLimits, type IngestNeed } from '../../../src/train/ingest/index.js';
import { jsonlText, makeShapesDataset, makeZip, type DatasetImage, type ZipItem } from '../../helpers/datasets.js';
import { manyEntryZipBomb } from '../../helpers/zip-bomb.js';
import { ingestBody, ingestError, makeTmpRoot } from './helpers.js';

const MiB = 1024 * 1024;
const tmp = makeTmpRoot();
afterAll(() => tmp.cleanup());
afterEach(() => expect(tmp.leftovers()).toEqual([]));

/** The sentinel an `admit` hook throws to stop right after the archive passed its bounds. */
class Admitted extends Error {
  constructor(readonly need: IngestNeed) {
    super('admitted');
  }
}
const stopAtAdmit = (need: IngestNeed) => {
  throw new Admitted(need);
};
/** ingestUpload wraps an error that is not an AppError: the sentinel is its cause. */
const admittedNeed = (err: unknown): IngestNeed => {
  const cause = (err as { cause?: unknown }).cause;
  expect(cause).toBeInstanceOf(Admitted);
  return (cause as Admitted).need;
};

describe('archive-wide bounds (before inflating)', () => {
  it("refuses the probe's many-entry bomb from its central directory: nothing is inflated, the refusal names the limit", async () => {
    const bomb = manyEntryZipBomb(1100, MiB - 1);
    expect(bomb.length).toBeLessThan(1.5 * MiB);
    const admitted: IngestNeed[] = [];
    const t0 = performance.now();
    // Default limits, as the service uses them.
    const err = await ingestError(ingestBody(bomb, tmp.dir, { admit: (need) => void admitted.push(need) }));
    const ms = performance.now() - t0;
    expect(err.code).toBe('invalid_archive');
    expect(err.details).toMatchObject({ limit: 'maxArchiveRatio', max: 256 * MiB, archiveBytes: bomb.length, maxArchiveRatio: 20 });
    expect(err.message).toBe(
      `archive declares more than ${256 * MiB} uncompressed bytes from ${bomb.length} bytes, over 20:1 for the archive as a whole (zip bomb?); refused before inflating`,
    );
    // Admission (the only way to inflation) never came: the scan refused it.
    expect(admitted).toEqual([]);
    console.log(`many-entry bomb (${bomb.length} bytes → ${1100 * (MiB - 1)} declared) refused in ${ms.toFixed(0)} ms`);
  });

  it('the default total is 2 GiB; over it the refusal names maxUncompressedBytes', async () => {
    expect(parseIngestLimits().maxUncompressedBytes).toBe(2 * 1024 * MiB);
    // A stored (incompressible) archive: within the ratio, over a lowered total.
    const zip = await makeZip([{ name: 'cat/a.bin', data: Buffer.alloc(300_000, 1), compress: false }]);
    const err = await ingestError(ingestBody(zip, tmp.dir, { limits: { maxUncompressedBytes: 200_000 } }));
    expect(err).toMatchObject({ code: 'invalid_archive', details: { limit: 'maxUncompressedBytes', max: 200_000 } });
  });

  it('counts entries whose names are skipped too (a name cannot dodge the bound)', async () => {
    const bomb = manyEntryZipBomb(400, MiB - 1, (i) => `.hidden/${i}.png`);
    const err = await ingestError(ingestBody(bomb, tmp.dir, { admit: stopAtAdmit }));
    expect(err).toMatchObject({ code: 'invalid_archive', details: { limit: 'maxArchiveRatio' } });
  });

  it('small archives of very compressible images pass under the floor (solid-colour BMP/TIFF data sets)', async () => {
    // 100 MiB declared from ~100 KB: 1000:1, but under the 256 MiB floor.
    const small = manyEntryZipBomb(100, MiB - 1);
    const err = await ingestError(ingestBody(small, tmp.dir, { admit: stopAtAdmit }));
    expect(admittedNeed(err)).toEqual({ entries: 100, inflatedBytes: 100 * (MiB - 1) });
  });

  it('JSONL uploads are admitted with their line count and size before any image is decoded', async () => {
    const images = await makeShapesDataset({ classes: 2, perClass: 3, size: 16, seed: 4 });
    const text = jsonlText(images);
    const err = await ingestError(ingestBody(text, tmp.dir, { contentType: 'application/x-ndjson', admit: stopAtAdmit }));
    expect(admittedNeed(err)).toEqual({ entries: 6, inflatedBytes: Buffer.byteLength(text) });
  });
});

describe('legitimate data sets still pass', () => {
  let sample: DatasetImage[];
  beforeAll(async () => {
    sample = [
      ...(await makeShapesDataset({ classes: 4, perClass: 5, size: 64, seed: 7, format: 'png' })),
      ...(await makeShapesDataset({ classes: 4, perClass: 5, size: 64, seed: 8, format: 'jpeg' })),
    ];
  });

  it('2,000 PNG/JPEG images in 4 classes pass every archive bound and are all ingested', async () => {
    const items: ZipItem[] = [];
    for (let i = 0; i < 2000; i++) {
      const img = sample[i % sample.length];
      items.push({ name: `${img.label}/${i}-${img.name}`, data: img.data });
    }
    const zip = await makeZip(items);
    const file = path.join(tmp.dir, 'legit.zip');
    await writeFile(file, zip);
    try {
      const needs: IngestNeed[] = [];
      const r = await ingestFile({ path: file, imageSize: 8, policy: 'reject', admit: (n) => void needs.push(n) });
      expect(r.totals.total).toBe(2000);
      expect(r.labels.length).toBe(4);
      expect(needs).toEqual([{ entries: 2000, inflatedBytes: items.reduce((a, it) => a + ('data' in it ? it.data.length : 0), 0) }]);
    } finally {
      await rm(file);
    }
  });
});
