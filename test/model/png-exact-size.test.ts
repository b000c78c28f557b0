import sharp, { type PngOptions } from 'sharp';
import { describe, expect, it } from 'vitest';
import { decodeWithSharp, preprocessImage, type BackboneConfig } from '../../src/model/index.js';
import { decodeExactSizePng } from '../../src/model/png-exact-size.js';
import { decodeToRgb } from '../../src/train/ingest/index.js';
import { rng } from '../helpers/tiny-backbone.js';

const SIZE = 28;
const cfg = { imageSize: SIZE, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], resample: 'bicubic' } as unknown as BackboneConfig;

/** Random samples with flat patches too, so palette quantisation and filters see both kinds. */
function samples(channels: number, seed: number, size = SIZE): Buffer {
  const r = rng(seed);
  const px = Buffer.alloc(size * size * channels);
  for (let i = 0; i < px.length; i++) px[i] = (i / channels) % size < size / 2 ? Math.floor(r.uniform() * 256) : (i * 37) % 256;
  return px;
}

const png = (channels: 1 | 2 | 3 | 4, seed: number, opts: PngOptions = {}, size = SIZE) =>
  sharp(samples(channels, seed, size), { raw: { width: size, height: size, channels } }).png(opts).toBuffer();

function crc32(bytes: Buffer): number {
  let c = ~0;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

/** Inserts a well-formed chunk after IHDR. */
function withChunk(file: Buffer, type: string, data = Buffer.alloc(4)): Buffer {
  const chunk = Buffer.alloc(12 + data.length);
  chunk.writeUInt32BE(data.length, 0);
  chunk.write(type, 4, 'latin1');
  data.copy(chunk, 8);
  chunk.writeUInt32BE(crc32(chunk.subarray(4, 8 + data.length)), 8 + data.length);
  return Buffer.concat([file.subarray(0, 33), chunk, file.subarray(33)]);
}

describe('exact-size PNG fast path', () => {
  const cases: [string, () => Promise<Buffer>][] = [
    ['RGB', () => png(3, 1)],
    ['RGBA (alpha dropped, not flattened)', () => png(4, 2)],
    ['grey', () => png(1, 3)],
    ['grey + alpha', () => png(2, 4)],
    ['palette, 256 colours', () => png(3, 5, { palette: true, colours: 256 })],
    ['palette, 16 colours (4-bit)', () => png(3, 6, { palette: true, colours: 16 })],
    ['palette, 2 colours (1-bit)', () => png(3, 7, { palette: true, colours: 2 })],
    ['palette with transparency', () => png(4, 8, { palette: true })],
    ['interlaced', () => png(3, 9, { progressive: true })],
    ['interlaced RGBA', () => png(4, 10, { progressive: true })],
    ['uncompressed, adaptive filters', () => png(3, 11, { compressionLevel: 0, adaptiveFiltering: true })],
    ['with a text chunk', async () => withChunk(await png(3, 12), 'tEXt', Buffer.from('Comment\0hello'))],
  ];
  for (const [name, make] of cases) {
    it(`decodes ${name} to exactly sharp's pixels`, async () => {
      const bytes = await make();
      const fast = decodeExactSizePng(bytes, SIZE);
      expect(fast, 'took the fast path').toBeDefined();
      const slow = await decodeWithSharp(bytes, SIZE, cfg, 1e8);
      expect(Buffer.from(fast!).equals(Buffer.from(slow))).toBe(true);
      // Data set ingestion takes the same path: training and serving see the same pixels.
      expect((await decodeToRgb(bytes, { imageSize: SIZE, resample: 'bicubic', maxPixels: 1e8 })).equals(Buffer.from(slow))).toBe(true);
    });
  }

  it('leaves to sharp what it might transform: another size, 16-bit, ICC, gamma, EXIF, unknown chunks, broken files', async () => {
    const rgb = await png(3, 20);
    expect(decodeExactSizePng(rgb, SIZE + 1)).toBeUndefined();
    expect(decodeExactSizePng(await png(3, 21, {}, 32), SIZE)).toBeUndefined();
    expect(decodeExactSizePng(await png(3, 21, {}, 96), 96), "96×96 still qualifies").toBeDefined();
    expect(decodeExactSizePng(await png(3, 21, {}, 128), 128), "128×128 goes to sharp").toBeUndefined();
    const sixteen = await sharp(samples(3, 22)!, { raw: { width: SIZE, height: SIZE, channels: 3 } }).toColourspace('rgb16').png().toBuffer();
    expect(sixteen[24], 'a 16-bit file').toBe(16);
    expect(decodeExactSizePng(sixteen, SIZE)).toBeUndefined();
    const icc = await sharp(rgb).withIccProfile('p3').png().toBuffer();
    expect(icc.includes('iCCP')).toBe(true);
    expect(decodeExactSizePng(icc, SIZE)).toBeUndefined();
    const rotated = await sharp(rgb).withMetadata({ orientation: 6 }).png().toBuffer();
    expect(rotated.includes('eXIf')).toBe(true);
    expect(decodeExactSizePng(rotated, SIZE)).toBeUndefined();
    for (const type of ['gAMA', 'cHRM', 'sBIT', 'acTL', 'zzZz']) expect(decodeExactSizePng(withChunk(rgb, type), SIZE), type).toBeUndefined();
    expect(decodeExactSizePng(rgb.subarray(0, rgb.length - 20), SIZE), 'truncated').toBeUndefined();
    const badCrc = Buffer.from(rgb);
    const idat = badCrc.indexOf('IDAT');
    badCrc[idat + 6] ^= 0xff;
    expect(decodeExactSizePng(badCrc, SIZE), 'corrupt data').toBeUndefined();
    // A pixel limit below the input size still refuses, as sharp would.
    await expect(preprocessImage(rgb, cfg, { maxPixels: 100 })).rejects.toMatchObject({ code: 'invalid_image' });
    await expect(decodeToRgb(rgb, { imageSize: SIZE, maxPixels: 100 })).rejects.toThrow(/limit/);
  });

  it("gives preprocessImage the same tensor either way, an unknown chunk sending it to sharp", async () => {
    const r = rng(30);
    for (let k = 0; k < 5; k++) {
      const bytes = await png(3, Math.floor(r.uniform() * 1e6));
      const viaFast = await preprocessImage(bytes, cfg);
      const viaSharp = await preprocessImage(withChunk(bytes, 'zzZz'), cfg);
      expect(Array.from(viaFast)).toEqual(Array.from(viaSharp));
    }
    // Sharp still rotates what carries an orientation.
    const rotated = await sharp(await png(3, 31)).withMetadata({ orientation: 6 }).png().toBuffer();
    const turned = await preprocessImage(rotated, cfg);
    const upright = await preprocessImage(await png(3, 31), cfg);
    expect(Array.from(turned)).not.toEqual(Array.from(upright));
  });
});
