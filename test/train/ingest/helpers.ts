/** Shared plumbing for the ingestion tests: a private temp root and a leftover check. */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { ingestUpload, type IngestUploadOptions, type IngestUploadResult } from '../../../src/train/ingest/index.js';
import { bufferStream } from '../../helpers/datasets.js';

export function makeTmpRoot(): { dir: string; leftovers: () => string[]; cleanup: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dtl-ingest-test-'));
  return {
    dir,
    leftovers: () => readdirSync(dir),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

export function ingestBody(
  body: Buffer | string | Readable,
  tmpDir: string,
  opts: Partial<Omit<IngestUploadOptions, 'source' | 'tmpDir'>> = {},
): Promise<IngestUploadResult> {
  const source = typeof body === 'string' || Buffer.isBuffer(body) ? bufferStream(body) : body;
  return ingestUpload({
    source,
    tmpDir,
    maxBytes: 64 * 1024 * 1024,
    imageSize: 16,
    policy: 'skip',
    ...opts,
    limits: { minPerClass: 1, ...opts.limits },
  });
}

/** Resolves to the AppError an ingestion threw (fails the test if it succeeded). */
export async function ingestError(p: Promise<unknown>): Promise<{ code: string; message: string; details?: Record<string, unknown> }> {
  try {
    await p;
  } catch (err) {
    return err as { code: string; message: string };
  }
  throw new Error('expected the ingestion to fail');
}
