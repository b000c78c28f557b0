import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  countExamples,
  decodePrepared,
  encodePrepared,
  encodePreparedParts,
  type PreparedDataset,
} from '../../../src/train/ingest/index.js';

function sample(count = 3, size = 4): PreparedDataset {
  const labelIds = Int32Array.from({ length: count }, (_, i) => i % 2);
  const splits = Uint8Array.from({ length: count }, (_, i) => i % 4);
  const pixels = Uint8Array.from({ length: count * size * size * 3 }, (_, i) => (i * 7) & 255);
  return {
    imageSize: size,
    labels: ['a', 'b'],
    counts: countExamples(2, labelIds, splits),
    sources: Array.from({ length: count }, (_, i) => `x/${i}.png`),
    pixels,
    labelIds,
    splits,
  };
}

function expectCorrupt(buf: Buffer, reason: RegExp) {
  let err: { code?: string; message?: string } | undefined;
  try {
    decodePrepared(buf);
  } catch (e) {
    err = e as typeof err;
  }
  expect(err?.code).toBe('invalid_dataset');
  expect(err?.message).toMatch(reason);
}

describe('prepared data set format', () => {
  it('round-trips any small data set exactly', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 12 }),
        fc.integer({ min: 1, max: 6 }),
        fc.array(fc.string({ minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 5 }),
        fc.integer(),
        (count, size, rawLabels, seed) => {
          const labels = [...new Set(rawLabels)].sort();
          const labelIds = Int32Array.from({ length: count }, (_, i) => Math.abs(seed + i * 31) % labels.length);
          const splits = Uint8Array.from({ length: count }, (_, i) => Math.abs(seed + i) % 4);
          const ds: PreparedDataset = {
            imageSize: size,
            labels,
            counts: countExamples(labels.length, labelIds, splits),
            sources: Array.from({ length: count }, (_, i) => `line ${i + 1}`),
            pixels: Uint8Array.from({ length: count * size * size * 3 }, (_, i) => (i + seed) & 255),
            labelIds,
            splits,
          };
          const back = decodePrepared(encodePrepared(ds));
          expect(back.imageSize).toBe(size);
          expect(back.labels).toEqual(labels);
          expect(back.counts).toEqual(ds.counts);
          expect(back.sources).toEqual(ds.sources);
          expect([...back.labelIds]).toEqual([...labelIds]);
          expect([...back.splits]).toEqual([...splits]);
          expect(Buffer.from(back.pixels).equals(Buffer.from(ds.pixels))).toBe(true);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('parts concatenate to the same bytes and start with the versioned magic', () => {
    const ds = sample();
    const whole = encodePrepared(ds);
    expect(Buffer.concat(encodePreparedParts(ds)).equals(whole)).toBe(true);
    expect(whole.subarray(0, 8)).toEqual(Buffer.from('DTLPREP\x01', 'latin1'));
    // The pixels part is a view, not a copy.
    expect(encodePreparedParts(ds)[2].buffer).toBe(ds.pixels.buffer);
  });

  it('decodes from an unaligned offset inside a larger buffer', () => {
    const enc = encodePrepared(sample(5, 3));
    const holder = Buffer.alloc(enc.length + 3);
    enc.copy(holder, 3);
    const back = decodePrepared(holder.subarray(3));
    expect([...back.labelIds]).toEqual([0, 1, 0, 1, 0]);
  });

  it('refuses corrupt or foreign input with invalid_dataset', () => {
    const good = encodePrepared(sample());
    expectCorrupt(Buffer.from('hello world, not prepared'), /bad magic/);
    const v2 = Buffer.from(good);
    v2[7] = 2;
    expectCorrupt(v2, /unsupported version 2/);
    expectCorrupt(good.subarray(0, good.length - 1), /length is/);
    expectCorrupt(Buffer.concat([good, Buffer.alloc(1)]), /length is/);
    const hdrLen = good.readUInt32LE(8);
    const badHeader = Buffer.from(good);
    badHeader.write('{', 12 + 1, 'latin1');
    expectCorrupt(badHeader, /header is not JSON/);
    const badId = Buffer.from(good);
    badId.writeInt32LE(7, 12 + hdrLen);
    expectCorrupt(badId, /label id 7 out of range/);
    const badSplit = Buffer.from(good);
    badSplit[12 + hdrLen + 3 * 4] = 9;
    expectCorrupt(badSplit, /split id 9 out of range/);
    const swapped = Buffer.from(good);
    swapped.writeInt32LE(1, 12 + hdrLen); // example 0 moves from 'a' to 'b': counts no longer agree
    expectCorrupt(swapped, /counts in the header disagree/);
    const huge = Buffer.from(good);
    huge.writeUInt32LE(0xfffffff8, 8);
    expectCorrupt(huge, /header length out of range/);
  });

  it('refuses to encode inconsistent arrays', () => {
    const ds = { ...sample(), sources: ['only one'] };
    expect(() => encodePrepared(ds)).toThrow(/disagree/);
  });
});
