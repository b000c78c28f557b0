/**
 * Reads a spooled zip with yauzl (lazy entries, sizes validated while inflating). The central
 * directory is scanned first without inflating anything, so every archive-level limit (entry count,
 * total size, compression ratio, unsafe names) is enforced before a single byte is decompressed.
 */
import yauzl from 'yauzl';
import { AppError } from '../../errors.js';
import { decodeEntryName, escapeNameBytes, isIgnoredPath, safeEntryPath } from './entry-names.js';
import { escapeText, normalizeText, textProblem } from '../../text.js';
import type { IngestLimits } from './limits.js';
import { EntryProblem, type ProblemLog } from './problems.js';

export interface ZipFileEntry {
  /** Normalised path inside the archive (no leading `./`, `/` separators). */
  path: string;
  size: number;
  entry: yauzl.Entry;
}

export interface ScannedZip {
  files: ZipFileEntry[];
  /** Folder paths seen, explicitly or as parents of files. */
  dirs: Set<string>;
  zip: yauzl.ZipFile;
  /** Every central-directory record, used or not. */
  entries: number;
  /** Sum of every entry's declared uncompressed size: the most inflating can produce. */
  declaredBytes: number;
}

const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;

function archiveError(message: string, cause?: unknown): AppError {
  return new AppError('invalid_archive', message, cause === undefined ? {} : { cause });
}

/** A refusal that names the limit (`details.limit`), so a caller can tell which one to raise. */
function limitError(limit: keyof IngestLimits, message: string, details: Record<string, number> = {}): AppError {
  return new AppError('invalid_archive', message, { details: { limit, ...details } });
}

/**
 * The most the archive may declare in all: `maxUncompressedBytes`, and (above the floor that
 * small BMP/TIFF data sets need) `maxArchiveRatio` times the archive's own size.
 */
function declaredBound(limits: IngestLimits, archiveBytes: number): { bound: number; limit: 'maxUncompressedBytes' | 'maxArchiveRatio' } {
  const byRatio = Math.max(limits.archiveRatioFloorBytes, archiveBytes * limits.maxArchiveRatio);
  return byRatio < limits.maxUncompressedBytes ? { bound: byRatio, limit: 'maxArchiveRatio' } : { bound: limits.maxUncompressedBytes, limit: 'maxUncompressedBytes' };
}

export async function openZip(file: string): Promise<yauzl.ZipFile> {
  try {
    return await yauzl.openPromise(file, { lazyEntries: true, autoClose: false, decodeStrings: false, validateEntrySizes: true });
  } catch (err) {
    throw archiveError(`not a readable zip archive: ${(err as Error).message}`, err);
  }
}

function nextEntry(zip: yauzl.ZipFile): Promise<yauzl.Entry | null> {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      zip.off('entry', onEntry);
      zip.off('end', onEnd);
      zip.off('error', onError);
    };
    const onEntry = (e: yauzl.Entry) => (cleanup(), resolve(e));
    const onEnd = () => (cleanup(), resolve(null));
    const onError = (err: Error) => (cleanup(), reject(err));
    zip.once('entry', onEntry);
    zip.once('end', onEnd);
    zip.once('error', onError);
    zip.readEntry();
  });
}

/**
 * Scans every central-directory record; throws 'invalid_archive' on the first hostile one. Sizes
 * count for every record, also those skipped later (they are never inflated, but a bound that
 * skipped them could be dodged by a name).
 */
export async function scanZip(zip: yauzl.ZipFile, limits: IngestLimits, problems: ProblemLog): Promise<ScannedZip> {
  if (zip.entryCount > limits.maxEntries) {
    throw limitError('maxEntries', `archive has ${zip.entryCount} entries; the limit is ${limits.maxEntries}`, { entries: zip.entryCount, max: limits.maxEntries });
  }
  const { bound, limit } = declaredBound(limits, zip.fileSize);
  const files: ZipFileEntry[] = [];
  const dirs = new Set<string>();
  let total = 0;
  let entries = 0;
  for (;;) {
    let entry: yauzl.Entry | null;
    try {
      entry = await nextEntry(zip);
    } catch (err) {
      throw archiveError(`corrupt zip archive: ${(err as Error).message}`, err);
    }
    if (entry === null) break;
    entries += 1;
    const declared = entry.uncompressedSize;
    total += declared;
    if (total > bound) {
      throw limit === 'maxUncompressedBytes'
        ? limitError(limit, `archive expands to more than ${bound} bytes (maxUncompressedBytes); refused before inflating`, { max: bound })
        : limitError(
            limit,
            `archive declares more than ${bound} uncompressed bytes from ${zip.fileSize} bytes, over ` +
              `${limits.maxArchiveRatio}:1 for the archive as a whole (zip bomb?); refused before inflating`,
            { max: bound, archiveBytes: zip.fileSize, maxArchiveRatio: limits.maxArchiveRatio },
          );
    }
    const decoded = decodeEntryName(entry.fileNameRaw, entry.extraFields);
    if (!decoded.ok) {
      // Still refuse a hostile shape before reporting the encoding.
      safeEntryPath(escapeNameBytes(entry.fileNameRaw));
      problems.add(decoded.display, 'invalid_name', `entry name is not valid UTF-8 (raw bytes shown escaped); rename it and zip again`);
      continue;
    }
    const path = normalizeText(safeEntryPath(decoded.name));
    if (declared >= limits.compressionRatioMinBytes && declared > 0) {
      const ratio = entry.compressedSize === 0 ? Infinity : declared / entry.compressedSize;
      if (ratio > limits.maxCompressionRatio) {
        throw limitError(
          'maxCompressionRatio',
          `archive entry '${escapeText(path)}' expands ${Number.isFinite(ratio) ? ratio.toFixed(0) : '∞'}:1 ` +
            `(${entry.compressedSize} → ${declared} bytes); the limit is ${limits.maxCompressionRatio}:1 (zip bomb?)`,
        );
      }
    }
    const badChars = textProblem(path);
    if (badChars !== undefined) {
      problems.add(path, 'invalid_name', `entry name ${badChars}; rename it and zip again`);
      continue;
    }
    const isDir = decoded.name.endsWith('/') || decoded.name.endsWith('\\');
    if (path === '' || isIgnoredPath(path)) continue;
    const parts = path.split('/');
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
    if (isDir) {
      dirs.add(path);
      continue;
    }
    if (((entry.externalFileAttributes >>> 16) & S_IFMT) === S_IFLNK) {
      problems.add(path, 'unsupported_entry', 'symbolic links are not followed');
      continue;
    }
    files.push({ path, size: declared, entry });
  }
  return { files, dirs, zip, entries, declaredBytes: total };
}

/** One entry's bytes, or an EntryProblem; lying size headers are fatal ('invalid_archive'). */
export async function readZipEntry(zip: yauzl.ZipFile, f: ZipFileEntry, maxEntryBytes: number): Promise<Buffer> {
  if (f.size > maxEntryBytes) throw new EntryProblem('too_large', `file is ${f.size} bytes; the limit is ${maxEntryBytes}`);
  if (f.entry.isEncrypted()) throw new EntryProblem('unsupported_entry', 'encrypted entries are not supported');
  if (!f.entry.canDecodeFileData()) {
    throw new EntryProblem('unsupported_entry', `compression method ${f.entry.compressionMethod} is not supported`);
  }
  const chunks: Buffer[] = [];
  try {
    const stream = await zip.openReadStreamPromise(f.entry);
    let got = 0;
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      got += chunk.length;
      if (got > f.size) throw new Error('too many bytes in the stream'); // belt to yauzl's braces
      chunks.push(chunk);
    }
  } catch (err) {
    const msg = (err as Error).message;
    if (/too (many|few) bytes/i.test(msg)) {
      throw archiveError(`archive entry '${f.path}' does not match its declared size (${msg}); refused`, err);
    }
    throw new EntryProblem('unsupported_entry', `entry cannot be decompressed: ${msg}`);
  }
  return Buffer.concat(chunks);
}
