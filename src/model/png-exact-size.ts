/**
 * A synchronous decode for the commonest small input: a PNG already at the backbone's input size
 * that carries nothing sharp would act on. Such an image needs no resize, and PNG is lossless, so
 * the pixels are exactly what sharp's pipeline in preprocess.ts gives (a test checks every colour
 * type, bit depth and interlacing against sharp). It skips sharp's per-call cost — a hop to
 * libuv's pool and a libvips pipeline, ≈ 1.4 ms for a 28×28 image, more than the bundled
 * backbone's whole forward — which a classify or a data-set upload of small images would
 * otherwise pay per image.
 *
 * Anything else (another size, more than 96×96 pixels, 16-bit samples, an ICC profile or gamma
 * that sharp might convert through, EXIF orientation, animation, an unknown chunk, or bytes the
 * decoder rejects) answers undefined, and the caller decodes with sharp, whose errors are the
 * service's.
 */
import { PNG } from 'pngjs';

/**
 * Chunks that cannot change the decoded pixels in either decoder: the image itself, the palette
 * and transparency (alpha is dropped), and metadata nobody applies.
 */
const INERT_CHUNKS = new Set(['IHDR', 'PLTE', 'tRNS', 'IDAT', 'IEND', 'sRGB', 'pHYs', 'tEXt', 'zTXt', 'iTXt', 'tIME', 'bKGD']);

const PALETTE = 3;

/**
 * Above this many pixels sharp is the faster decoder, and the work belongs off the calling
 * thread: measured for random RGB, pngjs 0.08 ms at 28×28, 0.35 ms at 96×96, 0.73 ms at 128×128
 * and 1.8 ms at 224×224, against 0.8–1.1 ms for sharp at any of those sizes.
 */
const MAX_PIXELS = 96 * 96;

interface PngHeader {
  width: number;
  height: number;
  bitDepth: number;
  colourType: number;
}

/** The header if every chunk is inert and the file is well framed; otherwise undefined. */
function inertHeader(buf: Buffer): PngHeader | undefined {
  let at = 8;
  let header: PngHeader | undefined;
  while (at + 12 <= buf.length) {
    const length = buf.readUInt32BE(at);
    const type = buf.toString('latin1', at + 4, at + 8);
    if (!INERT_CHUNKS.has(type) || at + 12 + length > buf.length) return undefined;
    if (type === 'IHDR') {
      if (length !== 13 || header !== undefined) return undefined;
      header = { width: buf.readUInt32BE(at + 8), height: buf.readUInt32BE(at + 12), bitDepth: buf[at + 16]!, colourType: buf[at + 17]! };
    }
    if (type === 'IEND') return header;
    at += 12 + length;
  }
  return undefined;
}

/**
 * The image's RGB samples (HWC, 8-bit), or undefined when sharp must decode it (see the module
 * comment). Only `size`×`size` images qualify, so the work on the calling thread stays small.
 */
export function decodeExactSizePng(bytes: Uint8Array, size: number): Uint8Array | undefined {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const header = inertHeader(buf);
  if (header === undefined || header.width !== size || header.height !== size || size * size > MAX_PIXELS) return undefined;
  if (header.bitDepth !== 8 && header.colourType !== PALETTE) return undefined;
  let rgba: Buffer;
  try {
    rgba = PNG.sync.read(buf).data;
  } catch {
    return undefined;
  }
  if (rgba.length !== size * size * 4) return undefined;
  const rgb = new Uint8Array(size * size * 3);
  for (let i = 0, o = 0; i < rgba.length; i += 4, o += 3) {
    rgb[o] = rgba[i]!;
    rgb[o + 1] = rgba[i + 1]!;
    rgb[o + 2] = rgba[i + 2]!;
  }
  return rgb;
}
