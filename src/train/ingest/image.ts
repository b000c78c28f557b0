/**
 * Decodes one uploaded image into raw RGB at the backbone's size. The format is checked from the
 * magic bytes first, against the list classify uses too (model/image-format.ts: no SVG, PDF,
 * HEIC or raw VIPS through sharp's loaders), then against sharp's header read; the pixel count
 * from the header (a 20000×20000 PNG is refused without allocating it), and sharp runs with `limitInputPixels` and
 * `failOn: 'truncated'` as a second line. The pipeline is the one in src/model/preprocess.ts
 * (EXIF auto-orient, alpha dropped, sRGB, stretched to size×size with `fit: 'fill'`), stopping
 * before normalisation so a prepared data set holds uint8 (4× smaller than float32); a test keeps
 * the two in agreement so training and serving see the same pixels. A small PNG already at the
 * size skips sharp there and here alike.
 */
import sharp, { type Metadata } from 'sharp';
import { ACCEPTED_IMAGE_FORMATS, sharpAgrees, sniffImageFormat } from '../../model/image-format.js';
import { sharpKernel, type ResampleFilter } from '../../model/backbone-config.js';
import { decodeExactSizePng } from '../../model/png-exact-size.js';

export class ImageDecodeError extends Error {
  override readonly name = 'ImageDecodeError';
}

export { ACCEPTED_IMAGE_FORMATS, sniffImageFormat, type ImageFormat } from '../../model/image-format.js';

export interface DecodeOptions {
  imageSize: number;
  /** The backbone preprocessor's resize filter (model/preprocess.ts sharpKernel). */
  resample?: ResampleFilter;
  maxPixels: number;
}

/** One image → `imageSize × imageSize × 3` bytes, row-major RGB. Throws ImageDecodeError. */
export async function decodeToRgb(buf: Uint8Array, opts: DecodeOptions): Promise<Buffer> {
  const format = sniffImageFormat(buf);
  if (format === undefined) {
    throw new ImageDecodeError(`not a supported image (accepted: ${ACCEPTED_IMAGE_FORMATS})`);
  }
  // A small PNG already at the size decodes without sharp, to the same pixels (model/png-exact-size.ts).
  const exact = format === 'png' && opts.imageSize ** 2 <= opts.maxPixels ? decodeExactSizePng(buf, opts.imageSize) : undefined;
  if (exact !== undefined) return Buffer.from(exact.buffer, exact.byteOffset, exact.byteLength);
  const input = { limitInputPixels: opts.maxPixels, failOn: 'truncated' as const };
  let meta: Metadata;
  try {
    // Header only: no pixels are decoded, so no limit is needed here and the check below can
    // name the real dimensions instead of sharp's generic "exceeds pixel limit".
    meta = await sharp(buf, { limitInputPixels: false, failOn: 'truncated' }).metadata();
  } catch (err) {
    throw new ImageDecodeError(`unreadable ${format} image: ${firstLine(err)}`);
  }
  if (!sharpAgrees(format, meta)) {
    throw new ImageDecodeError(`file looks like ${format} but decodes as ${String(meta.format)}`);
  }
  const { width, height } = meta;
  if (!width || !height) throw new ImageDecodeError(`${format} image has no dimensions`);
  if (width * height > opts.maxPixels) {
    throw new ImageDecodeError(`image is ${width}×${height} = ${width * height} pixels; the limit is ${opts.maxPixels}`);
  }
  try {
    const { data, info } = await sharp(buf, input)
      .rotate()
      .removeAlpha()
      .toColourspace('srgb')
      .resize(opts.imageSize, opts.imageSize, { fit: 'fill', kernel: sharpKernel(opts.resample) })
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3 || info.width !== opts.imageSize || info.height !== opts.imageSize) {
      throw new ImageDecodeError(`decoder produced ${info.width}×${info.height}×${info.channels}, expected RGB`);
    }
    return data;
  } catch (err) {
    if (err instanceof ImageDecodeError) throw err;
    const msg = firstLine(err);
    if (/premature end|truncated|unexpected end/i.test(msg)) throw new ImageDecodeError(`truncated ${format} image: ${msg}`);
    // Under concurrent decodes libvips sometimes loses its message ("Unknown error"); a JPEG
    // that failed to decode and has no end-of-image marker is still recognisably cut off.
    if (format === 'jpeg' && !endsWithJpegEoi(buf)) {
      throw new ImageDecodeError(`truncated jpeg image: ${/unknown error/i.test(msg) ? 'the file ends before its end-of-image marker' : msg}`);
    }
    throw new ImageDecodeError(`corrupt ${format} image: ${msg}`);
  }
}

/** Whether the bytes end with JPEG's EOI marker (FF D9), ignoring trailing zero padding. */
function endsWithJpegEoi(buf: Uint8Array): boolean {
  let end = buf.length;
  while (end > 0 && buf[end - 1] === 0) end--;
  return end >= 2 && buf[end - 2] === 0xff && buf[end - 1] === 0xd9;
}

function firstLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.split('\n').map((l) => l.trim()).filter(Boolean).slice(0, 2).join(' / ').slice(0, 300);
}
