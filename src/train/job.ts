/**
 * The `train` job: the rows it needs → the compute (compute.ts: prepared data set from the blob
 * store → trainer → adapter file; in a training thread in the server and `dtl-host worker`) with
 * its progress and events written as they come → publish (blob + rows, on this thread, which
 * owns the database). Runs on the durable queue's Worker, which supplies the lease, heartbeat and
 * abort signal (cancel, lease loss, shutdown).
 *
 * Retries: a retried job first asks whether it already published (adapter_versions.job_id is
 * unique) and returns that version instead of training again; publishVersion is idempotent per
 * job too, so even a worker that lost its lease but kept running cannot publish a second time.
 * Problems with the request itself (data set gone, bad payload) are 4xx AppErrors: the Worker
 * fails those at once instead of retrying.
 */
import { z } from 'zod';
import type { Config } from '../config.js';
import type { Database } from '../db/open.js';
import * as adaptersRepo from '../db/repos/adapters.js';
import * as datasetsRepo from '../db/repos/datasets.js';
import type { AdapterVersion } from '../db/schema.js';
import { AppError, validationError } from '../errors.js';
import type { JobContext, JobHandler } from '../jobs/worker.js';
import type { Logger } from '../log.js';
import type { Backbone } from '../model/index.js';
import type { BlobStore } from '../storage/index.js';
import { inProcessTrainCompute, type TrainCompute } from './compute.js';
import { parseHyperparameters } from './hyperparameters.js';
import type { CachePrecision } from './prefix-store.js';
import { publishAdapterFile } from './publish.js';

export const TRAIN_JOB_KIND = 'train';

/** What training needs from the composition root (ServiceDeps satisfies it). */
export interface TrainDeps {
  config: Pick<Config, 'TRAIN_CACHE_BYTES' | 'JOB_LEASE_MS' | 'JOB_MAX_ATTEMPTS' | 'WORKER_CONCURRENCY'>;
  log: Logger;
  database: Database;
  blobs: BlobStore;
  backbone: Backbone;
}

export const trainJobPayloadSchema = z.object({
  datasetId: z.string(),
  adapterId: z.string(),
  /** Already validated when the job was enqueued; parsed again here (old payloads, hand-made rows). */
  hyperparameters: z.record(z.string(), z.unknown()),
});
export type TrainJobPayload = z.infer<typeof trainJobPayloadSchema>;

/** Shown to the tenant (job result, 'published' event): ids and metrics, never a storage key. */
export interface TrainJobResult {
  adapterId: string;
  versionId: string;
  version: number;
  accuracy: number;
  evaluatedOn: string;
  /** false when a retry found the version its earlier attempt had published. */
  trainedThisAttempt: boolean;
}

function resultOf(v: AdapterVersion, trainedThisAttempt: boolean): TrainJobResult {
  const evaluation = (v.metrics as { evaluation?: { accuracy?: number; split?: string } }).evaluation;
  return {
    adapterId: v.adapterId,
    versionId: v.id,
    version: v.version,
    accuracy: evaluation?.accuracy ?? NaN,
    evaluatedOn: evaluation?.split ?? 'unknown',
    trainedThisAttempt,
  };
}

export interface TrainHandlerOptions {
  /** Prefix cache precision (default float16: half the memory, loss curves agree to ~1e-5). */
  cachePrecision?: CachePrecision;
  /**
   * Where the compute runs (default: on the calling thread). The server and `dtl-host worker`
   * pass a training thread (src/threads/train-runner.ts), so the event loop that answers HTTP and
   * heartbeats the lease is never held by a batch.
   */
  compute?: TrainCompute;
}

export function trainJobHandler(deps: TrainDeps, options: TrainHandlerOptions = {}): JobHandler {
  const compute = options.compute ?? inProcessTrainCompute(deps);
  return async (ctx: JobContext): Promise<TrainJobResult> => {
    const { job } = ctx;
    const tenantId = job.tenantId;
    if (tenantId === null) throw new AppError('validation_failed', 'a train job must belong to a tenant');
    const parsed = trainJobPayloadSchema.safeParse(job.payload);
    if (!parsed.success) throw validationError(parsed.error, { context: 'train job payload' });
    const payload = parsed.data;
    const h = parseHyperparameters(payload.hyperparameters);
    const db = deps.database.db;

    const already = await adaptersRepo.findVersionByJob(db, tenantId, job.id);
    if (already !== undefined) {
      await ctx.event('published', { ...resultOf(already, false), note: 'published by an earlier attempt' });
      return resultOf(already, false);
    }
    await adaptersRepo.get(db, tenantId, payload.adapterId);
    const dataset = await datasetsRepo.get(db, tenantId, payload.datasetId);
    if (dataset.status !== 'ready' || dataset.preparedKey === null) {
      throw new AppError('invalid_state', `data set '${dataset.id}' is ${dataset.status}, not ready for training`);
    }
    ctx.signal.throwIfAborted();

    const trained = await compute(
      { jobId: job.id, preparedKey: dataset.preparedKey, hyperparameters: h, cacheBytes: deps.config.TRAIN_CACHE_BYTES, cachePrecision: options.cachePrecision },
      {
        started: (info) => ctx.event('started', { attempt: ctx.attempt, ...info }),
        epoch: (p) => ctx.progress({ phase: 'training', ...p }),
        search: (e) => ctx.event('search', e),
      },
      ctx.signal,
    );
    // A cancel or lost lease that arrived during the last epoch must not publish.
    ctx.signal.throwIfAborted();
    const { version, created } = await publishAdapterFile({
      db,
      blobs: deps.blobs,
      tenantId,
      adapterId: payload.adapterId,
      jobId: job.id,
      datasetId: dataset.id,
      bytes: trained.bytes,
      spec: trained.spec,
      backboneId: trained.backboneId,
      // The recipe trained (the search's choice), not 'auto'.
      hyperparameters: trained.hyperparameters,
      metrics: trained.metrics,
    });
    const result = resultOf(version, created);
    await ctx.event('published', result);
    deps.log.info({ job: job.id, tenantId, adapterId: payload.adapterId, version: version.version, accuracy: result.accuracy }, 'adapter version published');
    return result;
  };
}
