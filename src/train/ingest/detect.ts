/**
 * Decides which accepted form an upload is: a zip archive or a JSONL stream. The magic bytes
 * decide; the content type is a hint that can only refuse (an image or HTML body is not a data set,
 * and a body that contradicts a specific zip/JSONL type is refused rather than guessed at).
 */
import { AppError } from '../../errors.js';

export type UploadKind = 'zip' | 'jsonl';

const ZIP_TYPES = new Set(['application/zip', 'application/x-zip-compressed', 'application/x-zip', 'multipart/x-zip']);
const JSONL_TYPES = new Set([
  'application/jsonl',
  'application/x-jsonl',
  'application/x-ndjson',
  'application/ndjson',
  'application/jsonlines',
  'application/x-jsonlines',
  'application/json-lines',
]);
/** Types that say nothing about the body; the bytes decide. */
const GENERIC_TYPES = new Set(['', 'application/octet-stream', 'binary/octet-stream', 'text/plain', 'application/json']);

/** The kind a content type names: a specific kind, 'generic', or 'other' (refused). */
export function kindFromContentType(contentType: string | undefined): UploadKind | 'generic' | 'other' {
  const base = (contentType ?? '').split(';')[0].trim().toLowerCase();
  if (ZIP_TYPES.has(base)) return 'zip';
  if (JSONL_TYPES.has(base)) return 'jsonl';
  if (GENERIC_TYPES.has(base)) return 'generic';
  return 'other';
}

/** What the first bytes look like. */
export function sniffKind(head: Buffer): UploadKind | undefined {
  if (head.length >= 4 && head[0] === 0x50 && head[1] === 0x4b) {
    const sig = head.readUInt16LE(2);
    // local file header, empty archive (end record), spanned-archive marker
    if (sig === 0x0403 || sig === 0x0605 || sig === 0x0807) return 'zip';
  }
  let i = 0;
  if (head.length >= 3 && head[0] === 0xef && head[1] === 0xbb && head[2] === 0xbf) i = 3; // UTF-8 BOM
  while (i < head.length && (head[i] === 0x20 || head[i] === 0x09 || head[i] === 0x0a || head[i] === 0x0d)) i++;
  if (i < head.length && head[i] === 0x7b /* { */) return 'jsonl';
  return undefined;
}

/** Fails fast on a content type that can never be a data set (before the body is read). */
export function assertAcceptableContentType(contentType: string | undefined): void {
  if (kindFromContentType(contentType) === 'other') {
    throw new AppError(
      'unsupported_media_type',
      `content type '${contentType}' is not a data set; send a zip archive (application/zip) or JSONL (application/x-ndjson)`,
    );
  }
}

export function detectKind(contentType: string | undefined, head: Buffer): UploadKind {
  assertAcceptableContentType(contentType);
  const hinted = kindFromContentType(contentType);
  const sniffed = sniffKind(head);
  if (sniffed === undefined) {
    const what = head.length === 0 ? 'the upload is empty' : 'the upload is neither a zip archive nor a JSONL stream';
    throw new AppError('unsupported_media_type', `${what}; send a zip of class folders, a zip with labels.csv/labels.jsonl, or JSONL lines`);
  }
  if (hinted !== 'generic' && hinted !== sniffed) {
    throw new AppError('unsupported_media_type', `content type '${contentType}' says ${hinted} but the body looks like ${sniffed}`);
  }
  return sniffed;
}
