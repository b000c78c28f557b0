/**
 * Training verbs: start a training job for a tenant's data set (creating the adapter on first
 * use), read it, cancel it, and read its event stream (status changes, one progress event per
 * epoch, the published version) after a given event id — what an SSE route polls.
 */
import * as adaptersRepo from '../db/repos/adapters.js';
import * as datasetsRepo from '../db/repos/datasets.js';
import * as tenantsRepo from '../db/repos/tenants.js';
import type { Adapter, Job, JobEvent } from '../db/schema.js';
import { AppError, isAppError, validationError } from '../errors.js';
import { JobQueue, jobErrorOf, type JobError } from '../jobs/queue.js';
import { parseHyperparameters, resolveBlocks, type Hyperparameters } from '../train/hyperparameters.js';
import { TRAIN_JOB_KIND, type TrainJobPayload } from '../train/job.js';
import { WEBHOOK_JOB_KIND, webhookSchema, type WebhookSpec } from '../train/webhook-job.js';
import type { Page } from '../db/repos/util.js';
import type { ServiceDeps, TenantCtx } from './context.js';
import { parseAdapterName } from './names.js';

export interface StartTrainingInput {
  datasetId: string;
  /** Trains a new version of this adapter, creating it when the tenant has none by that name. */
  adapterName: string;
  description?: string;
  /** Partial: everything left out takes the recipe's default. */
  hyperparameters?: unknown;
  /** Called (signed, retried) when the job ends: `{url, secret}`. */
  webhook?: unknown;
}

/** One webhook delivery job of a training job, with its attempts. */
export interface WebhookDeliveryView {
  id: string;
  /** queued / running: still trying; succeeded: delivered; failed: gave up. */
  status: Job['status'];
  attempts: number;
  maxAttempts: number;
  url: string;
  log: Array<{ at: Date; attempt: number; status: number | null; error: string | null; ms: number }>;
}

export interface JobView {
  id: string;
  kind: string;
  status: Job['status'];
  attempts: number;
  maxAttempts: number;
  progress: unknown;
  result: unknown;
  /** Why the last attempt failed, as the tenant may see it (details are in the worker's log). */
  error: JobError | null;
  cancelRequested: boolean;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
}

export interface JobEventView {
  id: number;
  at: Date;
  type: string;
  data: unknown;
}

export function toJobView(j: Job): JobView {
  return {
    id: j.id,
    kind: j.kind,
    status: j.status,
    attempts: j.attempts,
    maxAttempts: j.maxAttempts,
    progress: j.progress ?? null,
    result: j.result ?? null,
    error: jobErrorOf(j.error),
    cancelRequested: j.cancelRequested,
    createdAt: j.createdAt,
    startedAt: j.startedAt,
    finishedAt: j.finishedAt,
  };
}


async function findOrCreateAdapter(deps: ServiceDeps, ctx: TenantCtx, name: string, description?: string): Promise<Adapter> {
  const db = deps.database.db;
  try {
    return await adaptersRepo.getByName(db, ctx.tenantId, name);
  } catch (err) {
    if (!isAppError(err) || err.code !== 'not_found') throw err;
  }
  const usage = await tenantsRepo.usage(db, ctx.tenantId);
  if (usage.adapters >= deps.config.QUOTA_ADAPTERS) {
    throw new AppError('quota_exceeded', `quota reached: at most ${deps.config.QUOTA_ADAPTERS} adapters per tenant`, {
      details: { kind: 'adapters', limit: deps.config.QUOTA_ADAPTERS, used: usage.adapters },
    });
  }
  try {
    return await adaptersRepo.create(db, ctx.tenantId, { name, description });
  } catch (err) {
    // Two requests created it at once: the other one won; train a version of that one.
    if (isAppError(err) && err.code === 'already_exists') return adaptersRepo.getByName(db, ctx.tenantId, name);
    throw err;
  }
}

/**
 * Validates everything that can be known now (hyperparameters against the backbone, the data set
 * is the tenant's and ready, the quota) so a bad request fails here, not minutes later in a job.
 */
export async function startTraining({ deps, ctx, input }: { deps: ServiceDeps; ctx: TenantCtx; input: StartTrainingInput }): Promise<{ adapter: Adapter; job: JobView }> {
  const adapterName = parseAdapterName(input.adapterName);
  const h: Hyperparameters = parseHyperparameters(input.hyperparameters ?? {});
  let webhook: WebhookSpec | undefined;
  if (input.webhook !== undefined) {
    const parsed = webhookSchema.safeParse(input.webhook);
    if (!parsed.success) throw validationError(parsed.error);
    webhook = parsed.data;
  }
  resolveBlocks(h, deps.backbone.config);
  const db = deps.database.db;
  const dataset = await datasetsRepo.get(db, ctx.tenantId, input.datasetId);
  if (dataset.status !== 'ready') {
    throw new AppError('invalid_state', `data set '${dataset.id}' is ${dataset.status}; only a ready data set can be trained on`, {
      details: { status: dataset.status },
    });
  }
  const adapter = await findOrCreateAdapter(deps, ctx, adapterName, input.description);
  const payload: TrainJobPayload & { webhook?: WebhookSpec } = { datasetId: dataset.id, adapterId: adapter.id, hyperparameters: h, ...(webhook && { webhook }) };
  const job = await JobQueue.of(deps).enqueue({ kind: TRAIN_JOB_KIND, tenantId: ctx.tenantId, payload });
  deps.log.info({ tenantId: ctx.tenantId, job: job.id, adapterId: adapter.id, datasetId: dataset.id }, 'training job queued');
  return { adapter, job: toJobView(job) };
}

export async function getJob({ deps, ctx, id }: { deps: ServiceDeps; ctx: TenantCtx; id: string }): Promise<JobView> {
  return toJobView(await JobQueue.of(deps).get(id, ctx.tenantId));
}

export async function listJobs({ deps, ctx, page = {} }: { deps: ServiceDeps; ctx: TenantCtx; page?: Page }): Promise<JobView[]> {
  return (await JobQueue.of(deps).list(ctx.tenantId, { kind: TRAIN_JOB_KIND, ...page })).map(toJobView);
}

/** Queued → cancelled now; running → cancel requested (the worker stops between batches; no version is published). */
export async function cancelJob({ deps, ctx, id }: { deps: ServiceDeps; ctx: TenantCtx; id: string }): Promise<JobView> {
  return toJobView(await JobQueue.of(deps).cancel(id, ctx.tenantId));
}

/** Events after `afterId` (0 = from the start), oldest first; a foreign or unknown job is 'not_found'. */
/** Status events written before errors were stored tenant-safe carry the raw text: read it through the same rule. */
/** Which worker (host/pid) held the lease is the operator's business (it is in the log), not the tenant's. */
function safeEventData(data: unknown): unknown {
  if (data === null || typeof data !== 'object' || Array.isArray(data)) return data;
  const { owner: _owner, ...rest } = data as Record<string, unknown>;
  return typeof rest.error === 'string' ? { ...rest, error: jobErrorOf(rest.error) } : rest;
}

export async function listJobEvents({
  deps,
  ctx,
  id,
  afterId = 0,
  limit,
}: {
  deps: ServiceDeps;
  ctx: TenantCtx;
  id: string;
  afterId?: number;
  limit?: number;
}): Promise<JobEventView[]> {
  const queue = JobQueue.of(deps);
  await queue.get(id, ctx.tenantId);
  if (!Number.isSafeInteger(afterId) || afterId < 0) throw new AppError('validation_failed', 'afterId must be a non-negative integer');
  const rows: JobEvent[] = await queue.listEvents(id, ctx.tenantId, afterId, limit);
  return rows.map((e) => ({ id: e.id, at: e.at, type: e.type, data: safeEventData(e.data) }));
}

/** The webhook deliveries of a tenant's training job (none when it has no webhook or has not ended). */
export async function listWebhookDeliveries({ deps, ctx, id }: { deps: ServiceDeps; ctx: TenantCtx; id: string }): Promise<WebhookDeliveryView[]> {
  const queue = JobQueue.of(deps);
  await queue.get(id, ctx.tenantId); // a foreign or unknown job is not_found
  const out: WebhookDeliveryView[] = [];
  for (const d of await queue.listFollowUps(ctx.tenantId, WEBHOOK_JOB_KIND, id)) {
    const events = await queue.listEvents(d.id, ctx.tenantId, 0, 100);
    out.push({
      id: d.id,
      status: d.status,
      attempts: d.attempts,
      maxAttempts: d.maxAttempts,
      url: String((d.payload as { webhook?: { url?: unknown } }).webhook?.url ?? ''),
      log: events
        .filter((e) => e.type === 'delivery')
        .map((e) => {
          const x = e.data as { attempt: number; status: number | null; error: string | null; ms: number };
          return { at: e.at, attempt: x.attempt, status: x.status, error: x.error, ms: x.ms };
        }),
    });
  }
  return out;
}
