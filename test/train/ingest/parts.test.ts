/** Small pure pieces: labels, CSV, form detection, bounded line reading, entry names. */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { detectKind, sniffKind } from '../../../src/train/ingest/detect.js';
import { decodeEntryName, isIgnoredPath, safeEntryPath } from '../../../src/train/ingest/entry-names.js';
import { readLines } from '../../../src/train/ingest/jsonl.js';
import { compareLabels, normaliseLabel, parseSplitName } from '../../../src/train/ingest/labels.js';
import { parseIngestLimits } from '../../../src/train/ingest/limits.js';
import { parseCsv } from '../../../src/train/ingest/manifest.js';
import { makeTmpRoot } from './helpers.js';

const tmp = makeTmpRoot();
afterAll(() => tmp.cleanup());

describe('labels', () => {
  it('normalises to NFC and trims; refuses empty, long and control-character labels', () => {
    expect(normaliseLabel('  cafe\u0301 ')).toEqual({ ok: true, label: 'caf\u00e9' });
    expect(normaliseLabel('x'.repeat(128))).toEqual({ ok: true, label: 'x'.repeat(128) });
    expect(normaliseLabel('🐱'.repeat(128)).ok).toBe(true); // characters, not UTF-16 units
    expect(normaliseLabel('   ')).toEqual({ ok: false, reason: 'label is empty' });
    expect(normaliseLabel('x'.repeat(129))).toEqual({ ok: false, reason: 'label has 129 characters; the limit is 128' });
    expect(normaliseLabel('a\nb').ok).toBe(false);
    expect(normaliseLabel('a\u0085b').ok).toBe(false);
    expect(normaliseLabel('bad\uFFFD').ok).toBe(false);
  });

  it('knows split aliases and sorts labels the same everywhere', () => {
    expect(['train', 'Validation', 'valid', 'TEST', 'x'].map(parseSplitName)).toEqual(['train', 'val', 'val', 'test', undefined]);
    expect(['b', 'B', 'a', 'é', 'z'].sort(compareLabels)).toEqual(['B', 'a', 'b', 'z', 'é']);
  });
});

describe('limits', () => {
  it('has defaults and bounds', () => {
    const l = parseIngestLimits();
    expect(l).toMatchObject({ maxClasses: 10_000, minPerClass: 2, maxCompressionRatio: 200, maxImagePixels: 40_000_000 });
    expect(parseIngestLimits({ minPerClass: 5 }).minPerClass).toBe(5);
    expect(() => parseIngestLimits({ maxClasses: 1 })).toThrow();
    expect(() => parseIngestLimits({ minPerClass: 0 })).toThrow();
  });
});

describe('CSV', () => {
  it('parses quotes, escaped quotes, embedded newlines, CRLF and a BOM, with record start lines', () => {
    const text = '\uFEFFpath,label\r\n"a,b.png","say ""hi"""\r\n"multi\nline.png",x\n\nlast.png,y';
    expect(parseCsv(text)).toEqual([
      { line: 1, fields: ['path', 'label'] },
      { line: 2, fields: ['a,b.png', 'say "hi"'] },
      { line: 3, fields: ['multi\nline.png', 'x'] },
      { line: 6, fields: ['last.png', 'y'] },
    ]);
  });
});

describe('form detection', () => {
  it('sniffs zip and JSONL from the first bytes', () => {
    expect(sniffKind(Buffer.from('PK\x03\x04rest', 'latin1'))).toBe('zip');
    expect(sniffKind(Buffer.from('PK\x05\x06', 'latin1'))).toBe('zip');
    expect(sniffKind(Buffer.from('\uFEFF \r\n{"image":', 'utf8'))).toBe('jsonl');
    expect(sniffKind(Buffer.from('GIF89a'))).toBeUndefined();
  });

  it('uses the content type as a hint that can only refuse', () => {
    const zip = Buffer.from('PK\x03\x04', 'latin1');
    expect(detectKind('application/zip; charset=binary', zip)).toBe('zip');
    expect(detectKind(undefined, zip)).toBe('zip');
    expect(detectKind('application/octet-stream', Buffer.from('{'))).toBe('jsonl');
    expect(() => detectKind('text/html', zip)).toThrow(/not a data set/);
    expect(() => detectKind('application/x-ndjson', zip)).toThrow(/says jsonl but the body looks like zip/);
  });
});

describe('bounded line reader', () => {
  it('yields lines, marks over-long ones without keeping them, handles CRLF and no final newline', async () => {
    const file = path.join(tmp.dir, 'lines.txt');
    writeFileSync(file, `a\r\n${'x'.repeat(5000)}\nbb\n\nccc`);
    const lines = [];
    for await (const l of readLines(file, 100)) lines.push(l);
    expect(lines).toEqual([
      { lineNo: 1, text: 'a' },
      { lineNo: 2, tooLong: true },
      { lineNo: 3, text: 'bb' },
      { lineNo: 4, text: '' },
      { lineNo: 5, text: 'ccc' },
    ]);
  });
});

describe('entry names', () => {
  it('decodes UTF-8 strictly and reports other bytes escaped', () => {
    expect(decodeEntryName(Buffer.from('café/1.png'), [])).toEqual({ ok: true, name: 'café/1.png' });
    expect(decodeEntryName(Buffer.from([0x63, 0xe9, 0x2f, 0x31]), [])).toEqual({ ok: false, display: 'c\\xE9/1' });
  });

  it('prefers a matching Info-ZIP Unicode Path field', () => {
    const raw = Buffer.from([0x63, 0xe9, 0x2f, 0x31]);
    const data = Buffer.concat([Buffer.from([1]), Buffer.alloc(4), Buffer.from('cé/1')]);
    data.writeUInt32LE(crc32(raw), 1);
    expect(decodeEntryName(raw, [{ id: 0x7075, data }])).toEqual({ ok: true, name: 'cé/1' });
    data.writeUInt32LE((crc32(raw) ^ 1) >>> 0, 1); // stale field: ignored
    expect(decodeEntryName(raw, [{ id: 0x7075, data }]).ok).toBe(false);
  });

  it('guards paths: absolute, drive, .., NUL refused; separators normalised', () => {
    expect(safeEntryPath('./a//b\\c.png')).toBe('a/b/c.png');
    for (const bad of ['/a', 'C:/a', 'c:\\a', 'a/../../b', '..', 'a\\..\\b', 'a\0b']) {
      expect(() => safeEntryPath(bad), bad).toThrow(/refused/);
    }
  });

  it('ignores OS clutter', () => {
    expect(['__MACOSX/a/._b.png', 'a/.DS_Store', '.git/x', 'a/Thumbs.db', 'a/b.png'].map(isIgnoredPath)).toEqual([true, true, true, true, false]);
  });
});
