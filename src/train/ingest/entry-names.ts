/**
 * Zip entry names: decoded strictly as UTF-8 (a name that is not valid UTF-8 is reported by its
 * escaped bytes, never guessed at as CP437), checked against zip-slip on our side as well as with
 * yauzl's own validator, and classified (folders, OS clutter to ignore).
 */
import { crc32 } from 'node:zlib';
import yauzl from 'yauzl';
import { AppError } from '../../errors.js';
import { escapeText } from '../../text.js';

const utf8 = new TextDecoder('utf-8', { fatal: true });

export type DecodedName = { ok: true; name: string } | { ok: false; display: string };

/** `caf\xE9/a.png`-style display of raw name bytes (printable ASCII kept, the rest escaped). */
export function escapeNameBytes(raw: Uint8Array): string {
  let out = '';
  for (const b of raw) out += b >= 0x20 && b < 0x7f && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0').toUpperCase()}`;
  return out;
}

/**
 * The entry's name. An Info-ZIP Unicode Path extra field (0x7075) whose CRC matches the header
 * name wins, as in yauzl; otherwise the header bytes must be valid UTF-8 whatever the flag says
 * (tools set the UTF-8 flag inconsistently, but a data set's names must be UTF-8).
 */
export function decodeEntryName(raw: Buffer, extraFields: { id: number; data: Buffer }[]): DecodedName {
  for (const f of extraFields) {
    if (f.id !== 0x7075 || f.data.length < 6 || f.data[0] !== 1) continue;
    if (crc32(raw) !== f.data.readUInt32LE(1)) continue;
    try {
      return { ok: true, name: utf8.decode(f.data.subarray(5)) };
    } catch {
      break;
    }
  }
  try {
    return { ok: true, name: utf8.decode(raw) };
  } catch {
    return { ok: false, display: escapeNameBytes(raw) };
  }
}

/**
 * Normalises separators and refuses names that escape the archive root. Our own check runs first
 * (absolute, drive letters, `..` segments, NUL), then yauzl's validator, so either alone suffices.
 */
export function safeEntryPath(name: string): string {
  const slashed = name.replace(/\\/g, '/');
  const shown = escapeText(slashed);
  const refuse = (why: string) =>
    new AppError('invalid_archive', `archive entry '${shown}' ${why}; the archive was refused`, { details: { entry: shown } });
  if (slashed.startsWith('/') || /^[A-Za-z]:/.test(slashed)) throw refuse('is an absolute path');
  if (slashed.includes('\0')) throw refuse('contains a NUL byte');
  if (slashed.split('/').includes('..')) throw refuse("climbs out of the archive with '..'");
  const yauzlError = yauzl.validateFileName(slashed);
  if (yauzlError !== null) throw refuse(`is not a safe name (${yauzlError})`);
  return slashed
    .split('/')
    .filter((s) => s !== '' && s !== '.')
    .join('/');
}

/** OS clutter that is silently skipped: dotfiles/dot-folders, macOS resource forks, Windows thumbnails. */
export function isIgnoredPath(path: string): boolean {
  const segments = path.split('/');
  if (segments[0] === '__MACOSX') return true;
  const last = segments[segments.length - 1];
  if (last === 'Thumbs.db' || last === 'desktop.ini') return true;
  return segments.some((s) => s.startsWith('.'));
}
