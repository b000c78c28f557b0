/**
 * Data set verbs. createDataset makes the row ('processing', under a lease it renews), streams the
 * upload to a private temp file (byte-limited, never buffered whole), validates and preprocesses
 * it (train/ingest) within the tenant's ingest budget, stores the raw upload and the prepared form
 * in the blob store under the tenant's prefix, and marks the row ready. A failed upload leaves
 * nothing behind: no row, no blobs, and earlier data sets untouched. A process that dies mid-way
 * leaves a row whose lease lapses: readers then show it failed, and the sweep takes its blobs.
 */
import { createReadStream } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { z } from 'zod';
import * as datasetsRepo from '../db/repos/datasets.js';
import * as tenantsRepo from '../db/repos/tenants.js';
import type { ClassCounts, Dataset, DatasetStatus } from '../db/schema.js';
import { AppError, isAppError, validationError } from '../errors.js';
import { nameSchema } from '../text.js';
import type { Page } from '../db/repos/util.js';
import {
  encodePreparedParts,
  ingestFile,
  removeWorkDir,
  spoolUpload,
  sweepWorkDirs,
  type DatasetForm,
  type IngestPolicy,
  type IngestResult,
  type SplitCounts,
} from '../train/ingest/index.js';
import type { ServiceDeps, TenantCtx } from './context.js';
import { ingestBudgetFor, type IngestReservation } from './ingest-budget.js';
import { tenantBlobPrefix } from './tenants.js';

export interface DatasetView {
  id: string;
  name: string;
  status: DatasetStatus;
  /** Sorted; a label's index is its class id. */
  labels: string[];
  /** Per label: images in each split. */
  classes: ClassCounts;
  imageCount: number;
  /** Raw upload + prepared form. */
  byteSize: number;
  problems: Array<{ code: string; message: string; file?: string }>;
  error: string | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface CreateDatasetInput {
  name: string;
  source: Readable;
  contentType?: string;
  /** 'skip' (default): drop unreadable files and report them; 'reject': fail on any problem. */
  policy?: IngestPolicy;
  /** Images a class needs (default 2). */
  minPerClass?: number;
  signal?: AbortSignal;
}

export interface CreateDatasetResult {
  dataset: DatasetView;
  form: DatasetForm;
  /** All problems, also those beyond the ones kept in the row. */
  problemCount: number;
  totals: SplitCounts;
}

const datasetName = nameSchema((s) => s.trim().min(1, 'name must not be empty').max(200, 'name is longer than 200 characters'));
const policySchema = z.enum(['skip', 'reject']);

export function toView(row: Dataset): DatasetView {
  return {
    id: row.id,
    name: row.name,
    status: row.status,
    labels: Object.keys(row.classes).sort(),
    classes: row.classes,
    imageCount: row.imageCount,
    byteSize: row.byteSize,
    problems: row.problems,
    error: row.error,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
  };
}

/** Where a data set's blobs live (the maintenance sweep spares or clears this folder whole). */
export const datasetBlobPrefix = (tenantId: string, datasetId: string) => `${tenantBlobPrefix(tenantId)}datasets/${datasetId}/`;

function classCounts(r: IngestResult): ClassCounts {
  // fromEntries defines own properties, so a label like '__proto__' stays an ordinary key.
  return Object.fromEntries(r.labels.map((label, i) => {
    const { train, val, test, unassigned, total } = r.counts[i];
    return [label, { train, val, test, unassigned, total }];
  }));
}

async function checkQuotas(deps: ServiceDeps, ctx: TenantCtx): Promise<number> {
  const usage = await tenantsRepo.usage(deps.database.db, ctx.tenantId);
  const { QUOTA_DATASETS, QUOTA_BYTES } = deps.config;
  if (usage.datasets >= QUOTA_DATASETS) {
    throw new AppError('quota_exceeded', `quota reached: at most ${QUOTA_DATASETS} datasets per tenant`, {
      details: { kind: 'datasets', limit: QUOTA_DATASETS, used: usage.datasets },
    });
  }
  const left = QUOTA_BYTES - usage.bytes;
  if (left <= 0) {
    throw new AppError('quota_exceeded', `storage quota reached: ${QUOTA_BYTES} bytes per tenant`, {
      details: { kind: 'bytes', limit: QUOTA_BYTES, remaining: 0 },
    });
  }
  return left;
}

export async function createDataset({ deps, ctx, input }: { deps: ServiceDeps; ctx: TenantCtx; input: CreateDatasetInput }): Promise<CreateDatasetResult> {
  const name = datasetName.safeParse(input.name);
  if (!name.success) throw validationError(name.error, { field: 'name' });
  const policy = policySchema.safeParse(input.policy ?? 'skip');
  if (!policy.success) throw new AppError('validation_failed', "policy must be 'skip' or 'reject'");
  const { config, blobs, database } = deps;
  const left = await checkQuotas(deps, ctx);
  const maxBytes = Math.min(config.UPLOAD_MAX_BYTES, left);

  // The row exists (and says 'processing') from the first byte on, under a lease this process
  // renews; if the process dies, readers see the lease lapse and the data set fail.
  const row = await datasetsRepo.create(database.db, ctx.tenantId, { name: name.data, status: 'processing', leaseMs: config.DATASET_LEASE_MS });
  const lease = new LeaseKeeper(deps, ctx.tenantId, row.id, (err) => input.source.destroy(err));
  const keys: string[] = [];
  let spooled: Awaited<ReturnType<typeof spoolUpload>> | undefined;
  let reservation: IngestReservation | undefined;
  try {
    try {
      spooled = await spoolUpload(input.source, { maxBytes, tmpDir: uploadTmpDir(config) });
    } catch (err) {
      if (isAppError(err) && err.code === 'payload_too_large' && maxBytes < config.UPLOAD_MAX_BYTES) {
        throw new AppError('quota_exceeded', `storage quota reached: the upload is larger than the ${left} bytes this tenant has left`, {
          details: { kind: 'bytes', limit: config.QUOTA_BYTES, remaining: left },
        });
      }
      throw err;
    }
    const result = await ingestFile({
      path: spooled.path,
      contentType: input.contentType,
      imageSize: deps.backbone.config.imageSize,
      resample: deps.backbone.config.resample,
      policy: policy.data,
      limits: {
        maxImagePixels: config.IMAGE_MAX_PIXELS,
        maxUncompressedBytes: config.INGEST_MAX_INFLATED_BYTES,
        ...(input.minPerClass === undefined ? {} : { minPerClass: input.minPerClass }),
      },
      admit: (need) => (reservation = ingestBudgetFor(deps).reserve(ctx.tenantId, need)),
      signal: input.signal === undefined ? lease.signal : AbortSignal.any([input.signal, lease.signal]),
    });
    const parts = encodePreparedParts(result.prepared);
    const preparedBytes = parts.reduce((a, b) => a + b.length, 0);
    const total = spooled.bytes + preparedBytes;
    if (total > left) {
      throw new AppError('quota_exceeded', `storage quota reached: the data set needs ${total} bytes, ${left} are left`, {
        details: { kind: 'bytes', limit: config.QUOTA_BYTES, remaining: left, requested: total },
      });
    }
    await datasetsRepo.update(database.db, ctx.tenantId, row.id, { byteSize: total }, { fromStatus: ['processing'] });
    const rawKey = `${datasetBlobPrefix(ctx.tenantId, row.id)}upload`;
    const preparedKey = `${datasetBlobPrefix(ctx.tenantId, row.id)}prepared.bin`;
    keys.push(rawKey);
    await blobs.putStream(rawKey, createReadStream(spooled.path), spooled.bytes, { contentType: input.contentType });
    keys.push(preparedKey);
    await blobs.putStream(preparedKey, Readable.from(parts), preparedBytes, { contentType: 'application/octet-stream' });
    const ready = await datasetsRepo.update(
      database.db,
      ctx.tenantId,
      row.id,
      {
        status: 'ready',
        classes: classCounts(result),
        imageCount: result.totals.total,
        byteSize: total,
        rawKey,
        preparedKey,
        problems: result.problems.map((p) => ({ code: p.code, message: p.message, file: p.path })),
        leaseUntil: null,
      },
      { fromStatus: ['processing'] },
    );
    deps.log.info({ tenantId: ctx.tenantId, datasetId: row.id, images: result.totals.total, classes: result.labels.length, problems: result.problemCount }, 'dataset created');
    return { dataset: toView(ready), form: result.form, problemCount: result.problemCount, totals: result.totals };
  } catch (err) {
    // Leave nothing half-made: the row and every blob written for it.
    for (const key of keys) await blobs.delete(key).catch(() => {});
    await datasetsRepo.remove(database.db, ctx.tenantId, row.id).catch(() => {});
    throw lease.lost ? lease.lostError() : err;
  } finally {
    lease.stop();
    reservation?.release();
    if (spooled !== undefined) await removeWorkDir(spooled.workDir);
  }
}

/**
 * Renews a data set's lease every quarter of DATASET_LEASE_MS while it is being made. When the
 * renewal finds the data set no longer 'processing' (this process stalled past the lease and a
 * reader marked it failed), the upload is aborted (`onLost`, and `signal` for the ingestion): its
 * row is not ours to finish any more.
 */
class LeaseKeeper {
  private readonly controller = new AbortController();
  private readonly timer: NodeJS.Timeout;
  private stopped = false;
  lost = false;

  constructor(deps: Pick<ServiceDeps, 'database' | 'config' | 'log'>, tenantId: string, id: string, onLost: (err: AppError) => void) {
    const ms = deps.config.DATASET_LEASE_MS;
    this.timer = setInterval(() => {
      datasetsRepo.renewLease(deps.database.db, tenantId, id, ms).then(
        (held) => {
          if (held || this.lost || this.stopped) return;
          this.lost = true;
          this.controller.abort(this.lostError());
          onLost(this.lostError());
        },
        (err: unknown) => deps.log.warn({ err, datasetId: id }, 'data set lease renewal failed'),
      );
    }, Math.max(250, Math.floor(ms / 4)));
    this.timer.unref();
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  lostError(): AppError {
    return new AppError('unavailable', 'the upload stalled past its lease (DATASET_LEASE_MS) and was marked interrupted; upload again');
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }
}

const uploadTmpDir = (config: ServiceDeps['config']) => path.join(config.paths.dataDir, 'tmp');

/** At start: the upload work folders a crashed process left (older than SWEEP_GRACE_MS) go. */
export function sweepUploadWorkDirs({ deps }: { deps: Pick<ServiceDeps, 'config'> }): Promise<number> {
  return sweepWorkDirs(uploadTmpDir(deps.config), deps.config.SWEEP_GRACE_MS);
}

/**
 * A read that shows a 'processing' data set whose lease lapsed by this clock asks the database
 * (whose clock decides) to fail the tenant's interrupted uploads; true when it did, so the caller
 * reads again. Reads that show no such row cost nothing extra.
 */
async function failInterrupted(deps: Pick<ServiceDeps, 'database' | 'log'>, tenantId: string, rows: Dataset[]): Promise<boolean> {
  const now = Date.now();
  if (!rows.some((r) => r.status === 'processing' && r.leaseUntil !== null && r.leaseUntil.getTime() < now)) return false;
  const failed = await datasetsRepo.expireLeases(deps.database.db, tenantId);
  if (failed.length > 0) deps.log.warn({ tenantId, datasets: failed.map((d) => d.id) }, 'data sets interrupted while processing marked failed');
  return failed.length > 0;
}

export async function getDataset({ deps, ctx, id }: { deps: ServiceDeps; ctx: TenantCtx; id: string }): Promise<DatasetView> {
  const row = await datasetsRepo.get(deps.database.db, ctx.tenantId, id);
  if (await failInterrupted(deps, ctx.tenantId, [row])) return toView(await datasetsRepo.get(deps.database.db, ctx.tenantId, id));
  return toView(row);
}

export async function listDatasets({ deps, ctx, page }: { deps: ServiceDeps; ctx: TenantCtx; page?: Page & { status?: DatasetStatus } }): Promise<DatasetView[]> {
  const rows = await datasetsRepo.list(deps.database.db, ctx.tenantId, page);
  if (await failInterrupted(deps, ctx.tenantId, rows)) return (await datasetsRepo.list(deps.database.db, ctx.tenantId, page)).map(toView);
  return rows.map(toView);
}

/** Deletes the row, then its blobs. Adapter versions trained on it keep working (they only lose the link). */
export async function deleteDataset({ deps, ctx, id }: { deps: ServiceDeps; ctx: TenantCtx; id: string }): Promise<void> {
  const row = await datasetsRepo.remove(deps.database.db, ctx.tenantId, id);
  for (const key of [row.rawKey, row.preparedKey]) {
    if (key !== null) await deps.blobs.delete(key);
  }
}
