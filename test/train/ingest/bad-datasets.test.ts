/** Hostile and broken uploads: each ends in a stable AppError code or a reported problem, never a crash. */
import sharp from 'sharp';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  craftLargePng,
  jsonlText,
  makeShapesDataset,
  makeZip,
  replaceBytes,
  solidPng,
  type ZipItem,
} from '../../helpers/datasets.js';
import { ingestBody, ingestError, makeTmpRoot } from './helpers.js';

const tmp = makeTmpRoot();
afterAll(() => tmp.cleanup());
afterEach(() => expect(tmp.leftovers()).toEqual([]));

let png: Buffer;
let jpg: Buffer;
/** Two healthy classes to add next to the broken part. */
let good: ZipItem[];

beforeAll(async () => {
  png = await solidPng(8, 8, [200, 10, 10]);
  jpg = (await makeShapesDataset({ classes: 1, perClass: 1, size: 8, seed: 1, format: 'jpeg' }))[0].data;
  good = [
    { name: 'cat/1.png', data: png },
    { name: 'cat/2.png', data: png },
    { name: 'dog/1.jpg', data: jpg },
    { name: 'dog/2.jpg', data: jpg },
  ];
});

describe('zip archive attacks', () => {
  it('refuses a zip-slip name (../) with invalid_archive', async () => {
    const zip = replaceBytes(await makeZip([...good, { name: 'QQ/evil.png', data: png }]), 'QQ/evil.png', '../evil.png');
    const err = await ingestError(ingestBody(zip, tmp.dir));
    expect(err.code).toBe('invalid_archive');
    expect(err.message).toBe("archive entry '../evil.png' climbs out of the archive with '..'; the archive was refused");
  });

  it('refuses nested ../ and absolute names', async () => {
    const nested = replaceBytes(await makeZip([...good, { name: 'cat/QQ/QQ/x.png', data: png }]), 'cat/QQ/QQ/x.png', 'cat/../../x.png');
    expect((await ingestError(ingestBody(nested, tmp.dir))).code).toBe('invalid_archive');
    const abs = replaceBytes(await makeZip([...good, { name: 'Qetc/x.png', data: png }]), 'Qetc/x.png', '/etc/x.png');
    const err = await ingestError(ingestBody(abs, tmp.dir));
    expect(err.code).toBe('invalid_archive');
    expect(err.message).toContain("'/etc/x.png' is an absolute path");
    const drive = replaceBytes(await makeZip([...good, { name: 'QQQ/x.png', data: png }]), 'QQQ/x.png', 'C:/xx.png');
    expect((await ingestError(ingestBody(drive, tmp.dir))).code).toBe('invalid_archive');
  });

  it('refuses a zip bomb entry by its compression ratio', async () => {
    const zip = await makeZip([...good, { name: 'cat/bomb.png', data: Buffer.alloc(5 * 1024 * 1024), compressionLevel: 9 }]);
    expect(zip.length).toBeLessThan(100 * 1024);
    const err = await ingestError(ingestBody(zip, tmp.dir));
    expect(err.code).toBe('invalid_archive');
    expect(err.message).toMatch(/^archive entry 'cat\/bomb\.png' expands \d+:1 \(\d+ → 5242880 bytes\); the limit is 200:1 \(zip bomb\?\)$/);
  });

  it('applies a configured ratio limit to smaller entries too', async () => {
    const zip = await makeZip([...good, { name: 'cat/z.bin', data: Buffer.alloc(64 * 1024), compressionLevel: 9 }]);
    const err = await ingestError(ingestBody(zip, tmp.dir, { limits: { maxCompressionRatio: 10, compressionRatioMinBytes: 1024 } }));
    expect(err.code).toBe('invalid_archive');
    expect(err.message).toContain('the limit is 10:1');
  });

  it('refuses an archive whose declared total size is over the limit', async () => {
    const zip = await makeZip([...good, { name: 'cat/big.bin', data: Buffer.alloc(300_000, 1), compress: false }]);
    const err = await ingestError(ingestBody(zip, tmp.dir, { limits: { maxUncompressedBytes: 200_000 } }));
    expect(err.code).toBe('invalid_archive');
    expect(err.message).toBe('archive expands to more than 200000 bytes (maxUncompressedBytes); refused before inflating');
  });

  it('refuses an entry that inflates past its declared size (lying header)', async () => {
    const zip = Buffer.from(await makeZip([...good, { name: 'cat/lie.png', data: Buffer.alloc(100_000, 7), compress: true }]));
    // Central directory records start 0x02014b50; the uncompressed size is at +24. The last
    // record is cat/lie.png: make it claim 1000 bytes (under every limit, ratio included).
    const sig = Buffer.from([0x50, 0x4b, 0x01, 0x02]);
    const records: number[] = [];
    for (let at = zip.indexOf(sig); at >= 0; at = zip.indexOf(sig, at + 4)) records.push(at);
    expect(records.length).toBe(5);
    zip.writeUInt32LE(1000, records[4] + 24);
    const err = await ingestError(ingestBody(zip, tmp.dir));
    expect(err.code).toBe('invalid_archive');
    expect(err.message).toMatch(/^archive entry 'cat\/lie\.png' does not match its declared size \(too many bytes/);
  });

  it('refuses too many entries before reading them', async () => {
    const zip = await makeZip([...good, { name: 'cat/3.png', data: png }]);
    const err = await ingestError(ingestBody(zip, tmp.dir, { limits: { maxEntries: 4 } }));
    expect(err.code).toBe('invalid_archive');
    expect(err.message).toBe('archive has 5 entries; the limit is 4');
  });

  it('refuses a corrupt archive', async () => {
    const err = await ingestError(ingestBody(Buffer.concat([Buffer.from('PK\x03\x04', 'latin1'), Buffer.alloc(200, 1)]), tmp.dir));
    expect(err.code).toBe('invalid_archive');
    expect(err.message).toMatch(/^not a readable zip archive/);
  });
});

describe('data set rules', () => {
  it('one class → invalid_dataset', async () => {
    const err = await ingestError(ingestBody(await makeZip(good.slice(0, 2)), tmp.dir));
    expect(err.code).toBe('invalid_dataset');
    expect(err.message).toBe("a data set needs at least 2 classes; found only one class ('cat')");
  });

  it('empty classes are reported and dropped under skip, fatal under reject', async () => {
    const zip = await makeZip([...good, { dir: 'bird/' }, { dir: 'fish/' }]);
    const r = await ingestBody(zip, tmp.dir);
    expect(r.labels).toEqual(['cat', 'dog']);
    expect(r.problems).toEqual([
      { path: 'bird', code: 'empty_class', message: "class 'bird' has no usable images" },
      { path: 'fish', code: 'empty_class', message: "class 'fish' has no usable images" },
    ]);
    const err = await ingestError(ingestBody(zip, tmp.dir, { policy: 'reject' }));
    expect(err.code).toBe('invalid_dataset');
    expect(err.message).toBe(
      "data set rejected: 2 problems: bird (empty_class: class 'bird' has no usable images); fish (empty_class: class 'fish' has no usable images)",
    );
  });

  it('classes under minPerClass are dropped with too_few_images; too few left → invalid_dataset', async () => {
    const zip = await makeZip([...good, { name: 'cow/1.png', data: png }]);
    const r = await ingestBody(zip, tmp.dir, { limits: { minPerClass: 2 } });
    expect(r.labels).toEqual(['cat', 'dog']);
    expect(r.problems).toEqual([{ path: 'cow', code: 'too_few_images', message: "class 'cow' has 1 usable image; at least 2 needed" }]);
    const err = await ingestError(ingestBody(zip, tmp.dir, { limits: { minPerClass: 3 } }));
    expect(err.code).toBe('invalid_dataset');
    expect(err.message).toBe('a data set needs at least 2 classes with 3+ usable images; none has (3 problems reported)');
  });

  it('10,001 classes → invalid_dataset naming the limit, before any image is decoded', async () => {
    // Entries are not images: had anything been decoded, 'reject' would list them instead.
    const items: ZipItem[] = [];
    for (let i = 0; i <= 10_000; i++) items.push({ name: `c${i}/x.png`, data: Buffer.from('not an image') });
    const zip = await makeZip(items);
    const err = await ingestError(ingestBody(zip, tmp.dir, { policy: 'reject' }));
    expect(err.code).toBe('invalid_dataset');
    expect(err.message).toBe('data set has 10001 classes; the limit is 10000');
  });

  it('10,001 classes in JSONL stop the first pass early', async () => {
    const lines: string[] = [];
    for (let i = 0; i <= 10_000; i++) lines.push(JSON.stringify({ image: 'AAAA', label: `c${i}` }));
    const err = await ingestError(ingestBody(lines.join('\n'), tmp.dir, { policy: 'reject' }));
    expect(err.code).toBe('invalid_dataset');
    expect(err.message).toBe('data set has more than 10000 classes; the limit is 10000');
  });

  it('bad label names are reported (too long, control characters) and never become classes', async () => {
    const long = 'x'.repeat(129);
    const zip = await makeZip([...good, { name: `${long}/1.png`, data: png }, { name: ' \t /1.png'.replace(' \t ', 'a\u0007b'), data: png }]);
    const r = await ingestBody(zip, tmp.dir);
    expect(r.labels).toEqual(['cat', 'dog']);
    expect(r.problems.map((p) => [p.path, p.code, p.message])).toEqual([
      // Shown escaped: a problem list never carries the control characters themselves.
      ['a\\u{7}b/1.png', 'invalid_name', 'entry name contains a control or invisible character (U+0007); rename it and zip again'],
      [`${long}/1.png`, 'invalid_label', `folder name '${long}' is not a usable label: label has 129 characters; the limit is 128`],
    ]);
  });

  it('refuses a data set whose preprocessed form would exceed maxPreparedBytes', async () => {
    const err = await ingestError(ingestBody(await makeZip(good), tmp.dir, { imageSize: 64, limits: { maxPreparedBytes: 40_000 } }));
    expect(err.code).toBe('invalid_dataset');
    expect(err.message).toBe('4 images at 64×64 need 49152 bytes once preprocessed; the limit is 40000');
  });
});

describe('unreadable files', () => {
  let truncated: Buffer;
  let huge: Buffer;
  beforeAll(async () => {
    const noise = Buffer.alloc(128 * 128 * 3);
    for (let i = 0; i < noise.length; i++) noise[i] = (i * 2654435761) >>> 24;
    const full = await sharp(noise, { raw: { width: 128, height: 128, channels: 3 } }).jpeg({ quality: 90 }).toBuffer();
    truncated = full.subarray(0, Math.floor(full.length * 0.6));
    huge = await craftLargePng(20000, 20000);
  });

  function badZip(): Promise<Buffer> {
    return makeZip([
      ...good,
      { name: 'cat/notes.txt', data: Buffer.from('hello, not an image') },
      { name: 'cat/vector.svg', data: Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>') },
      { name: 'dog/cut.jpg', data: truncated },
      { name: 'dog/huge.png', data: huge, compress: true },
      { name: 'dog/empty.png', data: Buffer.alloc(0) },
    ]);
  }

  it("'skip' reports each file by name with a reason and keeps the rest", async () => {
    const before = process.memoryUsage().rss;
    const r = await ingestBody(await badZip(), tmp.dir);
    // The 20000×20000 PNG was refused from its header: 1.2 GB of RGB was never allocated.
    expect(process.memoryUsage().rss - before).toBeLessThan(400 * 1024 * 1024);
    expect(r.labels).toEqual(['cat', 'dog']);
    expect(r.counts.map((c) => c.total)).toEqual([2, 2]);
    expect(r.problemCount).toBe(5);
    const byPath = Object.fromEntries(r.problems.map((p) => [p.path, p]));
    expect(Object.values(byPath).every((p) => p.code === 'invalid_image')).toBe(true);
    expect(byPath['cat/notes.txt'].message).toBe('not a supported image (accepted: JPEG, PNG, WebP, GIF, TIFF, AVIF)');
    expect(byPath['cat/vector.svg'].message).toBe('not a supported image (accepted: JPEG, PNG, WebP, GIF, TIFF, AVIF)');
    // libvips's own words, or ours when concurrent decodes lose its message ("Unknown error").
    expect(byPath['dog/cut.jpg'].message).toMatch(/^truncated jpeg image: (.*premature end of JPEG|the file ends before its end-of-image marker$)/i);
    expect(byPath['dog/huge.png'].message).toBe('image is 20000×20000 = 400000000 pixels; the limit is 40000000');
    expect(byPath['dog/empty.png'].message).toContain('not a supported image');
  });

  it("'reject' fails with invalid_dataset listing them", async () => {
    const err = await ingestError(ingestBody(await badZip(), tmp.dir, { policy: 'reject' }));
    expect(err.code).toBe('invalid_dataset');
    expect(err.message).toMatch(/^data set rejected: 5 problems: /);
    for (const name of ['cat/notes.txt', 'cat/vector.svg', 'dog/cut.jpg', 'dog/huge.png', 'dog/empty.png']) expect(err.message).toContain(name);
    expect((err.details?.problems as unknown[]).length).toBe(5);
  });

  it('a too-large entry is reported, not read', async () => {
    const zip = await makeZip([...good, { name: 'cat/big.png', data: Buffer.alloc(5000, 1) }]);
    const r = await ingestBody(zip, tmp.dir, { limits: { maxEntryBytes: 4000 } });
    expect(r.problems).toEqual([{ path: 'cat/big.png', code: 'too_large', message: 'file is 5000 bytes; the limit is 4000' }]);
  });

  it('non-UTF-8 entry names are reported naming the entry (skip) or rejected (reject)', async () => {
    const zip = replaceBytes(await makeZip([...good, { name: 'cafQ/1.png', data: png }]), 'cafQ/', Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x2f]));
    const r = await ingestBody(zip, tmp.dir);
    expect(r.labels).toEqual(['cat', 'dog']);
    expect(r.problems).toEqual([
      { path: 'caf\\xE9/1.png', code: 'invalid_name', message: 'entry name is not valid UTF-8 (raw bytes shown escaped); rename it and zip again' },
    ]);
    const err = await ingestError(ingestBody(zip, tmp.dir, { policy: 'reject' }));
    expect(err.code).toBe('invalid_dataset');
    expect(err.message).toContain('caf\\xE9/1.png (invalid_name');
  });

  it('files outside class folders are reported', async () => {
    const r = await ingestBody(await makeZip([...good, { name: 'README.png', data: png }]), tmp.dir);
    expect(r.problems).toEqual([
      { path: 'README.png', code: 'unexpected_path', message: 'file is not inside a class folder (expected label/file)' },
    ]);
    const split = await ingestBody(
      await makeZip([
        { name: 'train/cat/1.png', data: png },
        { name: 'train/dog/1.png', data: png },
        { name: 'extra/dog/2.png', data: png },
      ]),
      tmp.dir,
    );
    expect(split.problems).toEqual([
      { path: 'extra/dog/2.png', code: 'unexpected_path', message: 'file is outside the split folders (train/, val/, test/)' },
    ]);
  });
});

describe('manifests', () => {
  it('reports bad rows: missing file, unsafe path, duplicate, unknown split, bad label', async () => {
    const csv = [
      'split,label,path,comment',
      'train,cat,cat/1.png,ok',
      'train,cat,./cat/2.png,ok (leading ./)',
      'val,dog,dog/1.jpg,',
      ',dog,dog/2.jpg,"quoted, with comma"',
      'train,dog,dog/1.jpg,duplicate',
      'train,cat,../../etc/passwd,unsafe',
      'train,cat,cat/missing.png,missing',
      'holdout,cat,cat/1.png,bad split',
      'train,"bad\u0001label",cat/1.png,dup anyway',
      'train',
    ].join('\n');
    const zip = await makeZip([...good, { name: 'labels.csv', data: Buffer.from(csv) }]);
    const r = await ingestBody(zip, tmp.dir);
    expect(r.form).toBe('zip-manifest-csv');
    expect(r.counts).toEqual([
      { unassigned: 0, train: 2, val: 0, test: 0, total: 2 },
      { unassigned: 1, train: 0, val: 1, test: 0, total: 2 },
    ]);
    expect(r.problems.map((p) => [p.path, p.code])).toEqual([
      ['labels.csv:11', 'invalid_row'],
      ['labels.csv:6', 'duplicate_path'],
      ['labels.csv:7', 'invalid_path'],
      ['labels.csv:8', 'missing_file'],
      ['labels.csv:9', 'duplicate_path'],
      ['labels.csv:10', 'duplicate_path'],
    ]);
  });

  it('a manifest without path/label columns is invalid_dataset', async () => {
    const zip = await makeZip([...good, { name: 'labels.csv', data: Buffer.from('file,class\ncat/1.png,cat\n') }]);
    const err = await ingestError(ingestBody(zip, tmp.dir));
    expect(err.code).toBe('invalid_dataset');
    expect(err.message).toBe("labels.csv header must name the columns path,label[,split]; found 'file,class'");
  });

  it('two manifests are refused', async () => {
    const zip = await makeZip([...good, { name: 'labels.csv', data: Buffer.from('path,label\n') }, { name: 'labels.jsonl', data: Buffer.from('') }]);
    expect((await ingestError(ingestBody(zip, tmp.dir))).message).toBe('archive has both labels.csv and labels.jsonl; keep one manifest');
  });

  it('labels.jsonl rows that are not objects or lack fields are reported', async () => {
    const jl = ['{"path":"cat/1.png","label":"cat"}', '{"path":"cat/2.png","label":"cat"}', '[1]', 'nope', '{"path":"dog/1.jpg"}', '{"path":"dog/1.jpg","label":"dog","split":"val"}', '{"path":"dog/2.jpg","label":"dog","split":3}', '{"path":"dog/2.jpg","label":"dog","split":"test"}'];
    const r = await ingestBody(await makeZip([...good, { name: 'labels.jsonl', data: Buffer.from(jl.join('\n')) }]), tmp.dir);
    expect(r.counts[1]).toEqual({ unassigned: 0, train: 0, val: 1, test: 1, total: 2 });
    expect(r.problems.map((p) => [p.path, p.code])).toEqual([
      ['labels.jsonl:3', 'invalid_row'],
      ['labels.jsonl:4', 'invalid_row'],
      ['labels.jsonl:5', 'invalid_row'],
      ['labels.jsonl:7', 'invalid_row'],
    ]);
  });
});

describe('JSONL stream problems', () => {
  it('reports bad lines by number and refuses over-long lines without buffering them', async () => {
    const imgs = await makeShapesDataset({ classes: 2, perClass: 2, size: 12, seed: 2 });
    const body = [
      jsonlText(imgs).trimEnd(),
      '{not json',
      JSON.stringify({ image: 'AAAA', label: 'circle' }),
      JSON.stringify({ image: '!!!', label: 'circle' }),
      JSON.stringify({ label: 'circle' }),
      JSON.stringify({ image: imgs[0].data.toString('base64'), label: 'circle', split: 'later' }),
      JSON.stringify({ image: 'A'.repeat(200_000), label: 'circle' }),
    ].join('\n');
    const r = await ingestBody(body, tmp.dir, { limits: { maxEntryBytes: 100_000 } });
    expect(r.counts.map((c) => c.total)).toEqual([2, 2]);
    expect(r.problems.map((p) => [p.path, p.code])).toEqual([
      ['line 5', 'invalid_row'],
      ['line 8', 'invalid_row'],
      ['line 9', 'invalid_row'],
      ['line 10', 'too_large'],
      // Decode problems come after the first pass's, in line order.
      ['line 6', 'invalid_image'],
      ['line 7', 'invalid_image'],
    ]);
    expect(r.problems.find((p) => p.path === 'line 7')?.message).toBe('"image" is not base64');
  });
});

describe('upload handling', () => {
  it('over maxBytes → payload_too_large, temp files removed', async () => {
    const err = await ingestError(ingestBody(Buffer.alloc(300_000, 0x7b), tmp.dir, { maxBytes: 100_000 }));
    expect(err.code).toBe('payload_too_large');
    expect(err.message).toBe('upload is larger than the limit of 100000 bytes');
  });

  it('a content type that is not a data set → unsupported_media_type before reading', async () => {
    let read = false;
    const { Readable } = await import('node:stream');
    const source = new Readable({ read() { read = true; this.push(null); } });
    const err = await ingestError(ingestBody(source, tmp.dir, { contentType: 'image/png' }));
    expect(err.code).toBe('unsupported_media_type');
    expect(read).toBe(false);
  });

  it('a body that is neither zip nor JSONL → unsupported_media_type', async () => {
    const err = await ingestError(ingestBody(png, tmp.dir));
    expect(err.code).toBe('unsupported_media_type');
    expect(err.message).toMatch(/^the upload is neither a zip archive nor a JSONL stream/);
    const empty = await ingestError(ingestBody(Buffer.alloc(0), tmp.dir));
    expect(empty.message).toMatch(/^the upload is empty/);
  });

  it('a body that contradicts its content type → unsupported_media_type', async () => {
    const err = await ingestError(ingestBody('{"image":"","label":"a"}\n', tmp.dir, { contentType: 'application/zip' }));
    expect(err.code).toBe('unsupported_media_type');
    expect(err.message).toBe("content type 'application/zip' says zip but the body looks like jsonl");
  });

  it('an aborted ingestion stops and cleans up', async () => {
    const ac = new AbortController();
    ac.abort();
    const err = await ingestError(ingestBody(await makeZip(good), tmp.dir, { signal: ac.signal }));
    expect((err as unknown as Error).name).toBe('AbortError');
  });

  it('bad options → validation_failed', async () => {
    const err = await ingestError(ingestBody(await makeZip(good), tmp.dir, { imageSize: 3 }));
    expect(err.code).toBe('validation_failed');
  });
});
