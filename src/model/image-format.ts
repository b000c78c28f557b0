/**
 * The one list of image formats the service accepts, for training uploads (train/ingest) and
 * classify requests (preprocess.ts) alike. A format is recognised by content (magic bytes),
 * never by a declared type or file name, before sharp sees the bytes: sharp would also open SVG
 * (a renderer run on untrusted input), HEIF and more.
 * Images sent as text (JSON classify, JSONL data sets) are base64, optionally as a data: URL,
 * which must then declare one of these formats' media types.
 */

export type ImageFormat = 'jpeg' | 'png' | 'gif' | 'webp' | 'tiff' | 'avif';

/** For messages and docs. GIF and WebP: the first frame. */
export const ACCEPTED_IMAGE_FORMATS = 'JPEG, PNG, WebP, GIF, TIFF, AVIF';

/** Media types a data: URL may declare (image/jpg: a common misspelling of image/jpeg). */
export const IMAGE_MEDIA_TYPES: Readonly<Record<string, ImageFormat>> = {
  'image/jpeg': 'jpeg',
  'image/jpg': 'jpeg',
  'image/png': 'png',
  'image/gif': 'gif',
  'image/webp': 'webp',
  'image/tiff': 'tiff',
  'image/avif': 'avif',
};

export function sniffImageFormat(buf: Uint8Array): ImageFormat | undefined {
  const b = Buffer.from(buf.buffer, buf.byteOffset, Math.min(buf.length, 16));
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (b.length >= 8 && b.readUInt32BE(0) === 0x89504e47 && b.readUInt32BE(4) === 0x0d0a1a0a) return 'png';
  if (b.length >= 6 && (b.toString('latin1', 0, 6) === 'GIF87a' || b.toString('latin1', 0, 6) === 'GIF89a')) return 'gif';
  if (b.length >= 12 && b.toString('latin1', 0, 4) === 'RIFF' && b.toString('latin1', 8, 12) === 'WEBP') return 'webp';
  if (b.length >= 4 && (b.toString('latin1', 0, 4) === 'II*\0' || b.toString('latin1', 0, 4) === 'MM\0*')) return 'tiff';
  if (b.length >= 12 && b.toString('latin1', 4, 8) === 'ftyp') {
    // AVIF only: other HEIF brands (heic, mif1, …) are not accepted.
    const brand = b.toString('latin1', 8, 12);
    if (brand === 'avif' || brand === 'avis') return 'avif';
  }
  return undefined;
}

/** Whether sharp's header read agrees with the sniffed format (AVIF reads as HEIF with AV1). */
export function sharpAgrees(format: ImageFormat, meta: { format?: string; compression?: string }): boolean {
  if (format === 'avif') return meta.format === 'heif' && (meta.compression === undefined || meta.compression === 'av1');
  return meta.format === format;
}

export class ImageTextError extends Error {
  override readonly name = 'ImageTextError';
  constructor(
    message: string,
    /** 'encoding': not base64 / not a base64 data: URL; 'media_type': a data: URL declaring no accepted image type. */
    readonly reason: 'encoding' | 'media_type',
  ) {
    super(message);
  }
}

const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

/**
 * An image sent as text → its bytes: bare base64 (standard or URL-safe), or a data: URL that is
 * base64 and declares an accepted image media type. Throws ImageTextError. The bytes still have
 * to pass `sniffImageFormat`: the declared type is a precondition, not proof.
 */
export function decodeImageText(text: string): Buffer {
  let body = text;
  if (/^\s*data:/i.test(text)) {
    const start = text.indexOf(':') + 1;
    const comma = text.indexOf(',', start);
    if (comma < 0) throw new ImageTextError('a data: URL needs a comma before its data', 'encoding');
    const [type = '', ...params] = text.slice(start, comma).split(';').map((p) => p.trim().toLowerCase());
    if (!(type in IMAGE_MEDIA_TYPES)) {
      const accepted = Object.keys(IMAGE_MEDIA_TYPES).filter((t) => t !== 'image/jpg').join(', ');
      throw new ImageTextError(`the data: URL declares ${type === '' ? 'no media type' : `'${type}'`}; accepted: ${accepted}`, 'media_type');
    }
    if (!params.includes('base64')) throw new ImageTextError('a data: URL must be base64 (data:image/png;base64,…)', 'encoding');
    body = text.slice(comma + 1);
  }
  body = body.replace(/\s+/g, '');
  if (body.length === 0 || !BASE64.test(body)) throw new ImageTextError('not base64', 'encoding');
  return Buffer.from(body, body.includes('-') || body.includes('_') ? 'base64url' : 'base64');
}
