/**
 * Streams an upload to a file under a private temporary folder, counting bytes as they pass, so an
 * upload is never held in memory whole and an oversized one is cut off at the limit.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AppError, isAppError } from '../../errors.js';

export interface SpooledUpload {
  /** The file holding the upload, inside `workDir`. */
  path: string;
  /** A private folder; remove it with `removeWorkDir` when done. */
  workDir: string;
  bytes: number;
  sha256: string;
  /** The first bytes, for sniffing the form. */
  head: Buffer;
}

const HEAD_BYTES = 64;

export async function createWorkDir(tmpDir: string): Promise<string> {
  await mkdir(tmpDir, { recursive: true });
  return mkdtemp(path.join(tmpDir, 'ingest-'));
}

export async function removeWorkDir(workDir: string): Promise<void> {
  await rm(workDir, { recursive: true, force: true });
}

/**
 * Removes the work folders under `tmpDir` last touched more than `olderThanMs` ago: what a
 * process that died mid-upload left. Returns how many went.
 */
export async function sweepWorkDirs(tmpDir: string, olderThanMs: number, now = Date.now()): Promise<number> {
  let removed = 0;
  for (const name of await readdir(tmpDir).catch(() => [] as string[])) {
    if (!name.startsWith('ingest-')) continue;
    const dir = path.join(tmpDir, name);
    const st = await stat(dir).catch(() => undefined);
    if (st === undefined || now - st.mtimeMs <= olderThanMs) continue;
    await removeWorkDir(dir);
    removed++;
  }
  return removed;
}

/**
 * Writes `source` to `<tmpDir>/ingest-XXXX/upload`. Over `maxBytes` → AppError 'payload_too_large'
 * and the folder is removed; on success the caller owns the folder (see `removeWorkDir`).
 */
export async function spoolUpload(source: Readable, opts: { maxBytes: number; tmpDir: string }): Promise<SpooledUpload> {
  const workDir = await createWorkDir(opts.tmpDir);
  const file = path.join(workDir, 'upload');
  const hash = createHash('sha256');
  const headParts: Buffer[] = [];
  let headLen = 0;
  let bytes = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      bytes += chunk.length;
      if (bytes > opts.maxBytes) {
        done(new AppError('payload_too_large', `upload is larger than the limit of ${opts.maxBytes} bytes`, {
          details: { maxBytes: opts.maxBytes },
        }));
        return;
      }
      if (headLen < HEAD_BYTES) {
        const part = chunk.subarray(0, HEAD_BYTES - headLen);
        headParts.push(Buffer.from(part));
        headLen += part.length;
      }
      hash.update(chunk);
      done(null, chunk);
    },
  });
  try {
    await pipeline(source, counter, createWriteStream(file, { flags: 'wx' }));
  } catch (err) {
    await removeWorkDir(workDir);
    if (isAppError(err)) throw err;
    throw new AppError('bad_request', `upload could not be read: ${(err as Error).message}`, { cause: err });
  }
  return { path: file, workDir, bytes, sha256: hash.digest('hex'), head: Buffer.concat(headParts) };
}
