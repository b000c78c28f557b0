import { readFileSync } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { imagesToTensor, initBackend, preprocessImage, type BackboneConfig } from '../../src/model/index.js';
import { expectAppError, maxAbsDiff } from './expect.js';

const cfg = (imageSize: number, mean = [0.5, 0.5, 0.5], std = [0.5, 0.5, 0.5]) =>
  ({ imageSize, mean, std }) as unknown as BackboneConfig;

/** A w×h RGB image whose left half is black and right half white. */
function halves(w: number, h: number): Buffer {
  const px = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = w / 2; x < w; x++) px.fill(255, (y * w + x) * 3, (y * w + x) * 3 + 3);
  return px;
}

describe('preprocessing', () => {
  beforeAll(() => initBackend('wasm'));

  it('decodes the fixture PNG and normalises with the backbone mean/std (HWC)', async () => {
    const bytes = readFileSync(path.resolve(import.meta.dirname, '../fixtures/dtl-golden-hf/input-0.png'));
    const raw = await sharp(bytes).raw().toBuffer();
    const out = await preprocessImage(bytes, cfg(32));
    expect(out).toHaveLength(32 * 32 * 3);
    expect(maxAbsDiff(out, Array.from(raw, (v) => (v / 255 - 0.5) / 0.5))).toBeLessThan(1e-6);
    const imagenet = await preprocessImage(bytes, cfg(32, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]));
    expect(imagenet[4]).toBeCloseTo((raw[4] / 255 - 0.456) / 0.224, 5);
  });

  it('resizes any size to the square input, drops alpha, expands grey to RGB', async () => {
    const rgba = await sharp({ create: { width: 40, height: 20, channels: 4, background: { r: 255, g: 0, b: 0, alpha: 0.5 } } }).png().toBuffer();
    const out = await preprocessImage(rgba, cfg(8));
    expect(out).toHaveLength(8 * 8 * 3);
    expect(out[0]).toBeCloseTo(1, 5);
    expect(out[1]).toBeCloseTo(-1, 5);
    const grey = await sharp(Buffer.alloc(16 * 16, 128), { raw: { width: 16, height: 16, channels: 1 } }).png().toBuffer();
    const g = await preprocessImage(grey, cfg(4));
    expect(g).toHaveLength(4 * 4 * 3);
    expect(g[0]).toBeCloseTo(g[1], 6);
    expect(g[1]).toBeCloseTo(g[2], 6);
  });

  it('applies the EXIF orientation', async () => {
    // 8×4, black left / white right, stored with "rotate 90° clockwise to display": the black
    // half ends up on top.
    const jpeg = await sharp(halves(8, 4), { raw: { width: 8, height: 4, channels: 3 } }).jpeg({ quality: 100 }).withMetadata({ orientation: 6 }).toBuffer();
    const out = await preprocessImage(jpeg, cfg(8));
    const rowMean = (y: number) => out.slice(y * 24, (y + 1) * 24).reduce((a, b) => a + b, 0) / 24;
    expect(rowMean(0)).toBeLessThan(-0.8);
    expect(rowMean(7)).toBeGreaterThan(0.8);
  });

  it('refuses non-images, truncated files and oversized images with invalid_image', async () => {
    await expectAppError(() => preprocessImage(new TextEncoder().encode('definitely not an image'), cfg(8)), 'invalid_image', /not an image/);
    await expectAppError(() => preprocessImage(new Uint8Array(0), cfg(8)), 'invalid_image');
    const big = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#808080' } }).jpeg().toBuffer();
    const noisy = await sharp(Buffer.from(Array.from({ length: 64 * 64 * 3 }, (_, i) => (i * 7919) % 256)), { raw: { width: 64, height: 64, channels: 3 } });
    const jpeg = await noisy.clone().jpeg().toBuffer();
    const png = await noisy.clone().png().toBuffer();
    await expectAppError(() => preprocessImage(jpeg.subarray(0, Math.floor(jpeg.length / 2)), cfg(8)), 'invalid_image', /truncated or corrupt/);
    await expectAppError(() => preprocessImage(png.subarray(0, Math.floor(png.length / 2)), cfg(8)), 'invalid_image', /truncated or corrupt/);
    await expectAppError(() => preprocessImage(big, cfg(8), { maxPixels: 64 * 63 }), 'invalid_image', /too large/);
    expect(await preprocessImage(big, cfg(8), { maxPixels: 64 * 64 })).toHaveLength(192);
  });

  it('stacks images into one NHWC batch', async () => {
    const before = tf.memory().numTensors;
    const t = imagesToTensor([new Float32Array(12).fill(1), new Float32Array(12).fill(2)], cfg(2));
    expect(t.shape).toEqual([2, 2, 2, 3]);
    expect(t.dataSync()[12]).toBe(2);
    t.dispose();
    expect(tf.memory().numTensors).toBe(before);
    await expectAppError(() => imagesToTensor([new Float32Array(5)], cfg(2)), 'bad_request', /expected 12/);
  });
});
