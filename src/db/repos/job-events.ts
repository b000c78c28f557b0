/**
 * A job's event log: status changes (written by jobs.ts in the transaction that makes them),
 * progress and custom events, read in id order by the progress stream.
 */
import { and, asc, eq, gt, isNull } from 'drizzle-orm';
import { dbCall } from '../errors.js';
import type { Db } from '../open.js';
import { jobEvents, jobs, type Job, type JobEvent } from '../schema.js';
import { one, requireId } from './util.js';

/** A tenant id, or null for system jobs (tenant_id is null). */
export type JobScope = string | null;

const MESSAGES = { job_events_job_id_jobs_id_fk: 'job not found' };

export async function statusEvent(db: Db, job: Job, extra: Record<string, unknown> = {}): Promise<void> {
  await db.insert(jobEvents).values({
    jobId: job.id,
    tenantId: job.tenantId,
    type: 'status',
    data: { status: job.status, attempt: job.attempts, ...extra },
  });
  await enqueueWebhook(db, job);
}

/** The job that delivers a job's webhook (`payload.webhook`) once it ended. */
export const WEBHOOK_JOB_KIND = 'webhook';
/** Delivery attempts: with the queue's backoff (5 s doubling to 5 min) about 10 minutes of retries. */
const WEBHOOK_ATTEMPTS = 8;
const ENDED = new Set(['succeeded', 'failed', 'cancelled']);

/**
 * In the transaction that ends a job with a webhook: a delivery job, so the notification is as
 * durable as the ending itself (a restart neither loses nor repeats it) and never runs on the
 * request path (a cancel through the API only queues it).
 */
async function enqueueWebhook(db: Db, job: Job): Promise<void> {
  const webhook = (job.payload as { webhook?: unknown } | null)?.webhook;
  if (!ENDED.has(job.status) || job.kind === WEBHOOK_JOB_KIND || webhook === null || typeof webhook !== 'object') return;
  const [delivery] = await db
    .insert(jobs)
    .values({ kind: WEBHOOK_JOB_KIND, tenantId: job.tenantId, payload: { jobId: job.id, webhook }, maxAttempts: WEBHOOK_ATTEMPTS })
    .returning();
  await statusEvent(db, delivery);
}

export async function appendEvent(
  db: Db,
  event: { jobId: string; tenantId: string | null; type: string; data?: unknown },
): Promise<JobEvent> {
  const rows = await dbCall(
    () =>
      db
        .insert(jobEvents)
        .values({ jobId: event.jobId, tenantId: event.tenantId, type: event.type, data: event.data ?? {} })
        .returning(),
    MESSAGES,
  );
  return one(rows, 'job event');
}

/**
 * Events of one job after `afterId` (0 = from the start), oldest first. Scoped by the event's own
 * tenant id: another tenant's job yields nothing (callers check the job exists first). Ids come
 * from one sequence; events of one job are written by one worker at a time, so id order is their
 * order.
 */
export async function listEvents(db: Db, jobId: string, scope: JobScope, afterId = 0, limit = 500): Promise<JobEvent[]> {
  requireId(jobId, 'job');
  return db
    .select()
    .from(jobEvents)
    .where(
      and(
        eq(jobEvents.jobId, jobId),
        scope === null ? isNull(jobEvents.tenantId) : eq(jobEvents.tenantId, scope),
        gt(jobEvents.id, afterId),
      ),
    )
    .orderBy(asc(jobEvents.id))
    .limit(Math.min(Math.max(1, limit), 5000));
}
