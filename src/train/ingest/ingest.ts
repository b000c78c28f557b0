/**
 * Entry points of data set ingestion: an upload stream (or an already spooled file) in, a validated
 * PreparedDataset plus counts and problems out. No HTTP and no database here; the datasets service
 * stores the raw upload and the encoded prepared form, and records counts/problems in its row.
 */
import { open, stat } from 'node:fs/promises';
import os from 'node:os';
import type { Readable } from 'node:stream';
import { z } from 'zod';
import { AppError, isAppError, validationError } from '../../errors.js';
import type { ResampleFilter } from '../../model/backbone-config.js';
import { checkPlan, PreparedBuilder, type LoadedItem } from './builder.js';
import { assertAcceptableContentType, detectKind } from './detect.js';
import { readDirEntry, walkDirectory, type DirFileEntry } from './directory.js';
import { loadJsonl, planJsonl } from './jsonl.js';
import { ingestLimitsSchema, type IngestLimits, type IngestLimitsInput } from './limits.js';
import type { PreparedDataset } from './prepared.js';
import { EntryProblem, ProblemLog } from './problems.js';
import { removeWorkDir, spoolUpload } from './spool.js';
import { emptyCounts, type Candidate, type DatasetForm, type IngestPolicy, type Problem, type SplitCounts } from './types.js';
import { planZip, type ZipPlan } from './zip-layout.js';
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

/** What an upload will cost to read, known before anything is inflated or decoded. */
export interface IngestNeed {
  /** Zip entries (all records) or JSONL lines with an image. */
  entries: number;
  /** Zip: the declared uncompressed total; JSONL: the file's size (base64 decodes to less). */
  inflatedBytes: number;
}

export interface IngestFileOptions {
  /** The spooled upload. */
  path: string;
  /**
   * Called once the upload's cost is known and before any entry is inflated or image decoded;
   * throwing refuses the upload (the caller's per-tenant budget).
   */
  admit?: (need: IngestNeed) => void;
  contentType?: string;
  imageSize: number;
  /** The backbone preprocessor's resize filter. */
  resample?: ResampleFilter;
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

export interface IngestDirectoryOptions extends Omit<IngestFileOptions, 'path' | 'contentType' | 'admit'> {
  /** A folder laid out as a zip would be (class folders, split folders or a manifest). */
  dir: string;
}

function parseCommon(opts: Omit<IngestFileOptions, 'path'>): { limits: IngestLimits; concurrency: number } {
  const parsed = commonSchema.safeParse({ ...opts, limits: opts.limits ?? {} });
  if (!parsed.success) throw validationError(parsed.error, { context: 'ingest options' });
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

/** A manifest's text (zip entry or file): its read problems and bad UTF-8 fail the data set. */
async function manifestText<F extends { path: string }>(f: F, read: (f: F) => Promise<Buffer>): Promise<string> {
  let bytes: Buffer;
  try {
    bytes = await read(f);
  } catch (err) {
    if (err instanceof EntryProblem) throw new AppError('invalid_dataset', `${f.path}: ${err.message}`);
    throw err;
  }
  try {
    return strictUtf8.decode(bytes);
  } catch {
    throw new AppError('invalid_dataset', `${f.path} is not valid UTF-8 text`);
  }
}

/** Per-file loaders yield their problems as items: one unreadable file never fails the rest. */
async function* loadEntries<F extends { path: string }>(candidates: Candidate<F>[], read: (f: F) => Promise<Buffer>): AsyncGenerator<LoadedItem> {
  for (let index = 0; index < candidates.length; index++) {
    try {
      yield { index, data: await read(candidates[index].ref) };
    } catch (err) {
      if (err instanceof EntryProblem) yield { index, problem: err };
      else throw err;
    }
  }
}

type BuilderOptions = ConstructorParameters<typeof PreparedBuilder>[1];

/** Plan checks, decoding and the per-class rules for a planned zip or directory. */
async function buildPlan<F extends { path: string }>(
  plan: ZipPlan<F>,
  read: (f: F) => Promise<Buffer>,
  builderOpts: BuilderOptions,
  opts: { policy: IngestPolicy; signal?: AbortSignal },
): Promise<PreparedDataset> {
  checkPlan(plan.candidates, plan.declaredClasses, builderOpts.imageSize, builderOpts.limits);
  const builder = new PreparedBuilder(plan.candidates, builderOpts);
  await builder.fill(loadEntries(plan.candidates, read), opts.signal);
  return builder.finish(opts.policy, plan.declaredClasses).prepared;
}

function resultOf(form: DatasetForm, prepared: PreparedDataset, problems: ProblemLog): IngestResult {
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

/** Ingests a data set already on disk (see `spoolUpload`). The file is left in place. */
export async function ingestFile(opts: IngestFileOptions): Promise<IngestResult> {
  const { limits, concurrency } = parseCommon(opts);
  const kind = detectKind(opts.contentType, await readHead(opts.path));
  const problems = new ProblemLog(limits.maxProblems);
  const builderOpts = { imageSize: opts.imageSize, resample: opts.resample, limits, problems, concurrency };
  let form: DatasetForm;
  let prepared: PreparedDataset;

  if (kind === 'zip') {
    const zip = await openZip(opts.path);
    try {
      const read = (f: ZipFileEntry) => readZipEntry(zip, f, limits.maxEntryBytes);
      const scanned = await scanZip(zip, limits, problems);
      opts.admit?.({ entries: scanned.entries, inflatedBytes: scanned.declaredBytes });
      const plan = await planZip(scanned, (f) => manifestText(f, read), problems);
      form = plan.form;
      prepared = await buildPlan(plan, read, builderOpts, opts);
    } finally {
      zip.close();
    }
  } else {
    form = 'jsonl';
    const candidates = await planJsonl(opts.path, limits, problems);
    opts.admit?.({ entries: candidates.length, inflatedBytes: (await stat(opts.path)).size });
    checkPlan(candidates, [], opts.imageSize, limits);
    const builder = new PreparedBuilder(candidates, builderOpts);
    await builder.fill(loadJsonl(opts.path, candidates, limits), opts.signal);
    prepared = builder.finish(opts.policy, []).prepared;
  }
  return resultOf(form, prepared, problems);
}

/**
 * Ingests a local directory laid out as a zip upload would be (`dtl-host train --data DIR`): the
 * same layout rules, limits, decoding and problems; files are read from disk instead of inflated.
 * 'not_found' when `dir` does not exist; 'validation_failed' when it is not a directory.
 */
export async function ingestDirectory(opts: IngestDirectoryOptions): Promise<IngestResult> {
  const { limits, concurrency } = parseCommon(opts);
  const info = await stat(opts.dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') throw new AppError('not_found', `data set directory '${opts.dir}' not found`);
    throw new AppError('bad_request', `cannot read data set directory '${opts.dir}': ${err.message}`);
  });
  if (!info.isDirectory()) throw new AppError('validation_failed', `'${opts.dir}' is not a directory`);
  const problems = new ProblemLog(limits.maxProblems);
  const builderOpts = { imageSize: opts.imageSize, resample: opts.resample, limits, problems, concurrency };
  const read = (f: DirFileEntry) => readDirEntry(f, limits.maxEntryBytes);
  const plan = await planZip(await walkDirectory(opts.dir, limits, problems), (f) => manifestText(f, read), problems);
  const prepared = await buildPlan(plan, read, builderOpts, opts);
  return resultOf(plan.form.replace(/^zip-/, 'dir-') as DatasetForm, prepared, problems);
}

/**
 * Streams `source` to a temporary file (at most `maxBytes`, else 'payload_too_large'), ingests it,
 * and removes the temporary files whatever happens. A content type that cannot be a data set is
 * refused before the body is read.
 */
export async function ingestUpload(opts: IngestUploadOptions): Promise<IngestUploadResult> {
  parseCommon(opts);
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
