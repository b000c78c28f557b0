/**
 * Entry points of data set ingestion: an upload stream (or an already spooled file) in, a validated
 * PreparedDataset plus counts and problems out. No HTTP and no database here; the datasets service
 * stores the raw upload and the encoded prepared form, and records counts/problems in its row.
 */
import { open } from 'node:fs/promises';
import os from 'node:os';
import type { Readable } from 'node:stream';
import { z } from 'zod';
import { AppError, isAppError } from '../../errors.js';
import { checkPlan, PreparedBuilder, type LoadedItem } from './builder.js';
import { assertAcceptableContentType, detectKind } from './detect.js';
import { loadJsonl, planJsonl } from './jsonl.js';
import { ingestLimitsSchema, type IngestLimits, type IngestLimitsInput } from './limits.js';
import type { PreparedDataset } from './prepared.js';
import { EntryProblem, ProblemLog } from './problems.js';
import { removeWorkDir, spoolUpload } from './spool.js';
import { emptyCounts, type Candidate, type DatasetForm, type IngestPolicy, type Problem, type SplitCounts } from './types.js';
import { planZip } from './zip-layout.js';
import { openZip, readZipEntry, scanZip, type ZipFileEntry } from './zip.js';

export interface IngestResult {
  form: DatasetForm;
  /** Sorted (code-unit order); a label's id in `prepared.labelIds` is its index here. */
  labels: string[];
  /** Per label, aligned with `labels`: examples in each split. */
  counts: SplitCounts[];
  /** All labels together. */
  totals: SplitCounts;
  /** Files, rows and classes that were skipped (at most `limits.maxProblems` kept). */
  problems: Problem[];
  /** How many problems there were in all. */
  problemCount: number;
  prepared: PreparedDataset;
}

export interface IngestUploadResult extends IngestResult {
  upload: { bytes: number; sha256: string };
}

const commonSchema = z.object({
  contentType: z.string().optional(),
  imageSize: z.number().int().min(8).max(1024),
  policy: z.enum(['skip', 'reject']),
  limits: ingestLimitsSchema.optional(),
  concurrency: z.number().int().min(1).max(64).optional(),
});

export interface IngestFileOptions {
  /** The spooled upload. */
  path: string;
  contentType?: string;
  imageSize: number;
  policy: IngestPolicy;
  limits?: IngestLimitsInput;
  /** Images decoded at once (default: CPU count, at most 4). */
  concurrency?: number;
  signal?: AbortSignal;
}

export interface IngestUploadOptions extends Omit<IngestFileOptions, 'path'> {
  source: Readable;
  maxBytes: number;
  /** A private `ingest-XXXX` folder is made under it and always removed. */
  tmpDir: string;
}

function parseCommon(opts: IngestFileOptions): { limits: IngestLimits; concurrency: number } {
  const parsed = commonSchema.safeParse({ ...opts, limits: opts.limits ?? {} });
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new AppError('validation_failed', `ingest options: ${issue.path.join('.')}: ${issue.message}`);
  }
  return {
    limits: parsed.data.limits ?? ingestLimitsSchema.parse({}),
    concurrency: parsed.data.concurrency ?? Math.max(1, Math.min(4, os.availableParallelism())),
  };
}

async function readHead(file: string): Promise<Buffer> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(64);
    const { bytesRead } = await fh.read(buf, 0, 64, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

async function* loadZipEntries(
  zip: Parameters<typeof readZipEntry>[0],
  candidates: Candidate<ZipFileEntry>[],
  maxEntryBytes: number,
): AsyncGenerator<LoadedItem> {
  for (let index = 0; index < candidates.length; index++) {
    try {
      yield { index, data: await readZipEntry(zip, candidates[index].ref, maxEntryBytes) };
    } catch (err) {
      if (err instanceof EntryProblem) yield { index, problem: err };
      else throw err;
    }
  }
}

/** Ingests a data set already on disk (see `spoolUpload`). The file is left in place. */
export async function ingestFile(opts: IngestFileOptions): Promise<IngestResult> {
  const { limits, concurrency } = parseCommon(opts);
  const kind = detectKind(opts.contentType, await readHead(opts.path));
  const problems = new ProblemLog(limits.maxProblems);
  const builderOpts = { imageSize: opts.imageSize, limits, problems, concurrency };
  let form: DatasetForm;
  let built: ReturnType<PreparedBuilder['finish']>;

  if (kind === 'zip') {
    const zip = await openZip(opts.path);
    try {
      const scan = await scanZip(zip, limits, problems);
      const plan = await planZip(
        scan,
        async (f) => {
          let bytes: Buffer;
          try {
            bytes = await readZipEntry(zip, f, limits.maxEntryBytes);
          } catch (err) {
            if (err instanceof EntryProblem) throw new AppError('invalid_dataset', `${f.path}: ${err.message}`);
            throw err;
          }
          try {
            return strictUtf8.decode(bytes);
          } catch {
            throw new AppError('invalid_dataset', `${f.path} is not valid UTF-8 text`);
          }
        },
        problems,
      );
      form = plan.form;
      checkPlan(plan.candidates, plan.declaredClasses, opts.imageSize, limits);
      const builder = new PreparedBuilder(plan.candidates, builderOpts);
      await builder.fill(loadZipEntries(zip, plan.candidates, limits.maxEntryBytes), opts.signal);
      built = builder.finish(opts.policy, plan.declaredClasses);
    } finally {
      zip.close();
    }
  } else {
    form = 'jsonl';
    const candidates = await planJsonl(opts.path, limits, problems);
    checkPlan(candidates, [], opts.imageSize, limits);
    const builder = new PreparedBuilder(candidates, builderOpts);
    await builder.fill(loadJsonl(opts.path, candidates, limits), opts.signal);
    built = builder.finish(opts.policy, []);
  }

  const { prepared } = built;
  const totals = emptyCounts();
  for (const c of prepared.counts) {
    for (const k of Object.keys(totals) as (keyof SplitCounts)[]) totals[k] += c[k];
  }
  return {
    form,
    labels: prepared.labels,
    counts: prepared.counts,
    totals,
    problems: problems.items,
    problemCount: problems.total,
    prepared,
  };
}

/**
 * Streams `source` to a temporary file (at most `maxBytes`, else 'payload_too_large'), ingests it,
 * and removes the temporary files whatever happens. A content type that cannot be a data set is
 * refused before the body is read.
 */
export async function ingestUpload(opts: IngestUploadOptions): Promise<IngestUploadResult> {
  parseCommon({ ...opts, path: '' });
  assertAcceptableContentType(opts.contentType);
  const spooled = await spoolUpload(opts.source, { maxBytes: opts.maxBytes, tmpDir: opts.tmpDir });
  try {
    const result = await ingestFile({ ...opts, path: spooled.path });
    return { ...result, upload: { bytes: spooled.bytes, sha256: spooled.sha256 } };
  } catch (err) {
    if (isAppError(err) || (err instanceof Error && err.name === 'AbortError')) throw err;
    throw new AppError('internal', `ingestion failed: ${(err as Error).message}`, { cause: err });
  } finally {
    await removeWorkDir(spooled.workDir);
  }
}
