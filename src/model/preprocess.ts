/**
 * Image decoding and normalisation: an accepted format (image-format.ts, by magic bytes: the
 * list data set uploads use) → auto-rotated (EXIF), alpha dropped,
 * sRGB, resized to the backbone's square input (aspect not preserved, as the authors' resize;
 * with the filter its preprocessor config names: bilinear → linear, bicubic → cubic (Catmull-Rom,
 * PIL's a = −0.5), else Lanczos-3),
 * then (v/255 − mean)/std per channel, HWC float32. A PNG already at the input size that sharp
 * would not transform skips sharp (png-exact-size.ts): the same pixels, without its per-call cost.
 */
import * as tf from '@tensorflow/tfjs';
import sharp, { type OutputInfo } from 'sharp';
import { AppError } from '../errors.js';
import { sharpKernel, type BackboneConfig } from './backbone-config.js';
import { ACCEPTED_IMAGE_FORMATS, sniffImageFormat } from './image-format.js';
import { decodeExactSizePng } from './png-exact-size.js';

export interface PreprocessOptions {
  /** Largest decoded width × height accepted (default 40 MP). */
  maxPixels?: number;
}

export async function preprocessImage(bytes: Uint8Array, cfg: BackboneConfig, opts: PreprocessOptions = {}): Promise<Float32Array> {
  const maxPixels = opts.maxPixels ?? 40_000_000;
  const size = cfg.imageSize;
  // sharp would open more than we accept (SVG, HEIC, …): only the listed formats reach it. Its
  // loaders pick by the same magic bytes, so these bytes go to the loader of their format.
  const format = sniffImageFormat(bytes);
  if (format === undefined) throw new AppError('invalid_image', `not an image in an accepted format (${ACCEPTED_IMAGE_FORMATS})`);
  const exact = format === 'png' && size * size <= maxPixels ? decodeExactSizePng(bytes, size) : undefined;
  return normalise(exact ?? (await decodeWithSharp(bytes, size, cfg, maxPixels)), cfg);
}

/** Any accepted image → its RGB samples at `size`×`size` (HWC, 8-bit), by the module comment's pipeline. */
export async function decodeWithSharp(bytes: Uint8Array, size: number, cfg: Pick<BackboneConfig, 'resample'>, maxPixels: number): Promise<Uint8Array> {
  let raw: { data: Buffer; info: OutputInfo };
  try {
    // sharp's default pixel limit accepted a 16000×16000 PNG: always pass ours. 'truncated'
    // rejects cut-off files that would otherwise decode as partly grey.
    raw = await sharp(bytes, { limitInputPixels: maxPixels, failOn: 'truncated' })
      .rotate()
      .removeAlpha()
      .toColourspace('srgb')
      .resize(size, size, { fit: 'fill', kernel: sharpKernel(cfg.resample) })
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
  } catch (err) {
    const msg = String((err as Error).message ?? err);
    if (/pixel limit/i.test(msg)) {
      throw new AppError('invalid_image', `image is too large (more than ${maxPixels} pixels)`);
    }
    if (/unsupported image format/i.test(msg)) throw new AppError('invalid_image', 'not an image (unsupported or unrecognised format)');
    if (/truncat|premature|end of|corrupt|invalid|bad |read error/i.test(msg)) throw new AppError('invalid_image', `image is truncated or corrupt (${msg.split('\n')[0]})`);
    throw new AppError('invalid_image', `cannot decode image: ${msg.split('\n')[0]}`);
  }
  const { data, info } = raw;
  if (info.channels !== 3 || info.width !== size || info.height !== size) {
    throw new AppError('invalid_image', `decoded to ${info.width}×${info.height}×${info.channels}, expected ${size}×${size}×3`);
  }
  return data;
}

/** 8-bit RGB → (v/255 − mean)/std per channel. */
function normalise(data: Uint8Array, cfg: BackboneConfig): Float32Array {
  const size = cfg.imageSize;
  const out = new Float32Array(size * size * 3);
  const scale = cfg.std.map((s) => 1 / (255 * s));
  const shift = cfg.mean.map((m, c) => m / cfg.std[c]);
  for (let i = 0; i < out.length; i++) {
    const c = i % 3;
    out[i] = data[i] * scale[c] - shift[c];
  }
  return out;
}

/** Stacks preprocessed images into one NHWC batch. */
export function imagesToTensor(list: Float32Array[], cfg: BackboneConfig): tf.Tensor4D {
  const s = cfg.imageSize;
  return tf.tensor4d(imagesToArray(list, cfg), [list.length, s, s, 3]);
}

/** The images as one [n, S, S, 3] array (what the native engine takes). */
export function imagesToArray(list: Float32Array[], cfg: BackboneConfig): Float32Array {
  const per = cfg.imageSize * cfg.imageSize * 3;
  if (list.length === 0) throw new AppError('bad_request', 'no images');
  const all = new Float32Array(per * list.length);
  list.forEach((img, i) => {
    if (img.length !== per) throw new AppError('bad_request', `image ${i} has ${img.length} values, expected ${per}`);
    all.set(img, i * per);
  });
  return all;
}
