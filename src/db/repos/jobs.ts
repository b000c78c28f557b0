/**
 * The durable job table (its event log: job-events.ts). Every status change is written together
 * with a 'status' event in one transaction, so a progress stream sees each transition exactly
 * once and in order. Worker-side verbs are guarded by the lease owner: a worker that lost its lease cannot
 * complete, fail or extend a job someone else now runs.
 *
 * Time comes from the database clock (now()), never the caller's, so workers on several machines
 * agree on when a lease has expired.
 *
 * What a failed attempt leaves for its tenant, and the transient-retry policy: job-failures.ts.
 */
import { and, asc, desc, eq, inArray, lte, sql, type SQL } from 'drizzle-orm';
import type { PgUpdateSetSource } from 'drizzle-orm/pg-core';
import { dbCall } from '../errors.js';
import type { Db } from '../open.js';
import { jobEvents, jobs, type Job, type JobStatus } from '../schema.js';
import { statusEvent, type JobScope } from './job-events.js';
import { scoped } from './job-views.js';
import { DEFAULT_TRANSIENT_BACKOFF, formatJobError, LEASE_EXPIRED, transientHistory, type FailureKind, type JobError, type TransientBackoff } from './job-failures.js';
import { invalidState, one, requireId } from './util.js';

export { appendEvent, listEvents, type JobScope } from './job-events.js';
export { get, list } from './job-views.js';
export * from './job-failures.js';

export interface NewJob {
  kind: string;
  tenantId?: string | null;
  payload?: unknown;
  /** Higher runs first (default 0). */
  priority?: number;
  maxAttempts?: number;
  /** Not before this many ms from now (default 0). */
  delayMs?: number;
}

export interface Backoff {
  baseMs: number;
  maxMs: number;
}

export const TERMINAL: readonly JobStatus[] = ['succeeded', 'failed', 'cancelled'];

const MESSAGES = { jobs_tenant_id_tenants_id_fk: 'tenant not found' };

const inMs = (ms: number): SQL => sql`now() + make_interval(secs => ${Math.max(0, ms) / 1000})`;

/** Delay before retry number `attempts` + 1: base · 2^(attempts-1), capped. */
export function backoffMs(attempts: number, backoff: Backoff): number {
  return Math.min(backoff.maxMs, backoff.baseMs * 2 ** Math.max(0, attempts - 1));
}

export async function enqueue(db: Db, input: NewJob): Promise<Job> {
  if (input.tenantId != null) requireId(input.tenantId, 'tenant');
  return dbCall(
    () =>
      db.transaction(async (tx) => {
        const rows = await tx
          .insert(jobs)
          .values({
            kind: input.kind,
            tenantId: input.tenantId ?? null,
            payload: input.payload ?? {},
            priority: input.priority ?? 0,
            maxAttempts: input.maxAttempts ?? 3,
            runAfter: inMs(input.delayMs ?? 0),
          })
          .returning();
        const job = one(rows, 'job');
        await statusEvent(tx, job);
        return job;
      }),
    MESSAGES,
  );
}

/**
 * Take the next runnable job (highest priority, then oldest run_after) for `owner`, or undefined.
 * SKIP LOCKED lets concurrent claimers pass over each other's candidate rows instead of queueing
 * on them; the attempt is counted here.
 */
export async function claim(db: Db, owner: string, leaseMs: number, kinds?: readonly string[]): Promise<Job | undefined> {
  if (kinds !== undefined && kinds.length === 0) return undefined;
  return db.transaction(async (tx) => {
    const next = tx
      .select({ id: jobs.id })
      .from(jobs)
      .where(
        and(
          eq(jobs.status, 'queued'),
          lte(jobs.runAfter, sql`now()`),
          kinds === undefined ? undefined : inArray(jobs.kind, [...kinds]),
        ),
      )
      .orderBy(desc(jobs.priority), asc(jobs.runAfter), asc(jobs.createdAt))
      .limit(1)
      .for('update', { skipLocked: true });
    const rows = await tx
      .update(jobs)
      .set({
        status: 'running',
        leaseOwner: owner,
        leaseExpiresAt: inMs(leaseMs),
        attempts: sql`${jobs.attempts} + 1`,
        startedAt: sql`coalesce(${jobs.startedAt}, now())`,
        updatedAt: sql`now()`,
      })
      .where(inArray(jobs.id, next))
      .returning();
    const job = rows[0];
    if (job !== undefined) await statusEvent(tx, job, { owner });
    return job;
  });
}

/** Extend the lease (and store progress if given). `held` false means the lease was lost. */
export async function heartbeat(
  db: Db,
  id: string,
  owner: string,
  leaseMs: number,
  progress?: unknown,
): Promise<{ held: boolean; cancelRequested: boolean }> {
  const rows = await db
    .update(jobs)
    .set({
      leaseExpiresAt: inMs(leaseMs),
      updatedAt: sql`now()`,
      ...(progress === undefined ? {} : { progress }),
    })
    .where(and(eq(jobs.id, id), eq(jobs.leaseOwner, owner), eq(jobs.status, 'running')))
    .returning({ cancelRequested: jobs.cancelRequested });
  const row = rows[0];
  return row === undefined ? { held: false, cancelRequested: false } : { held: true, cancelRequested: row.cancelRequested };
}

/** Store the job's current progress and append it as a 'progress' event. False if the lease is lost. */
export async function setProgress(db: Db, id: string, owner: string, progress: unknown): Promise<boolean> {
  return db.transaction(async (tx) => {
    const rows = await tx
      .update(jobs)
      .set({ progress, updatedAt: sql`now()` })
      .where(and(eq(jobs.id, id), eq(jobs.leaseOwner, owner), eq(jobs.status, 'running')))
      .returning({ tenantId: jobs.tenantId });
    const row = rows[0];
    if (row === undefined) return false;
    await tx.insert(jobEvents).values({ jobId: id, tenantId: row.tenantId, type: 'progress', data: progress ?? {} });
    return true;
  });
}

type Patch = PgUpdateSetSource<typeof jobs>;
type Decision = { patch: Patch; event?: Record<string, unknown> };

/**
 * Apply a state change to a job this owner runs, with its status event, atomically. Returns the
 * updated job, or undefined when the owner no longer holds the lease.
 */
async function transition(
  db: Db,
  id: string,
  owner: string,
  decide: (job: Job, tx: Db) => Promise<Decision> | Decision,
): Promise<Job | undefined> {
  return db.transaction(async (tx) => {
    const rows = await tx
      .select()
      .from(jobs)
      .where(and(eq(jobs.id, id), eq(jobs.leaseOwner, owner), eq(jobs.status, 'running')))
      .for('update');
    const job = rows[0];
    if (job === undefined) return undefined;
    const { patch, event } = await decide(job, tx);
    const [updated] = await tx
      .update(jobs)
      .set({ ...patch, updatedAt: sql`now()` })
      .where(eq(jobs.id, id))
      .returning();
    await statusEvent(tx, updated, event);
    return updated;
  });
}

const ENDED = { leaseOwner: null, leaseExpiresAt: null, finishedAt: sql`now()` } as const;

export async function complete(db: Db, id: string, owner: string, result: unknown): Promise<Job | undefined> {
  return transition(db, id, owner, () => ({
    patch: { status: 'succeeded', result: result ?? null, error: null, ...ENDED },
  }));
}

/**
 * Record a failed attempt. Transient failures (within the budget) go back to the queue after
 * their own backoff and give back the attempt the claim charged; other retryable failures go back
 * after the ordinary backoff while attempts remain; the rest fail the job. A job whose cancel was
 * requested ends cancelled instead. The status event carries the error and, when it will be
 * retried, `retryInMs` (and `transient: true`).
 */
export async function fail(
  db: Db,
  id: string,
  owner: string,
  error: JobError,
  opts: { kind: FailureKind; backoff: Backoff; transient?: TransientBackoff },
): Promise<Job | undefined> {
  const text = formatJobError(error);
  return transition(db, id, owner, async (job, tx) => {
    if (job.cancelRequested) return { patch: { status: 'cancelled', error: text, ...ENDED } };
    const requeue = (delay: number, patch: Patch = {}, event: Record<string, unknown> = {}): Decision => ({
      patch: { status: 'queued', error: text, leaseOwner: null, leaseExpiresAt: null, runAfter: inMs(delay), ...patch },
      event: { error, retryInMs: delay, ...event },
    });
    if (opts.kind === 'transient') {
      const policy = opts.transient ?? DEFAULT_TRANSIENT_BACKOFF;
      const history = await transientHistory(tx, job.id);
      if (history.count === 0 || history.sinceMs < policy.budgetMs) {
        return requeue(backoffMs(history.count + 1, policy), { attempts: Math.max(0, job.attempts - 1) }, { transient: true });
      }
    }
    if (opts.kind !== 'permanent' && job.attempts < job.maxAttempts) return requeue(backoffMs(job.attempts, opts.backoff));
    return { patch: { status: 'failed', error: text, ...ENDED }, event: { error } };
  });
}

/** The worker stopped the job because a cancel was requested. */
export async function markCancelled(db: Db, id: string, owner: string): Promise<Job | undefined> {
  return transition(db, id, owner, () => ({ patch: { status: 'cancelled', ...ENDED } }));
}

/**
 * Give a job back untouched (graceful shutdown): queued again at once, and the attempt it was
 * charged at claim is returned, since it did not fail.
 */
export async function release(db: Db, id: string, owner: string): Promise<Job | undefined> {
  return transition(db, id, owner, (job) => ({
    patch: {
      status: job.cancelRequested ? 'cancelled' : 'queued',
      attempts: Math.max(0, job.attempts - 1),
      leaseOwner: null,
      leaseExpiresAt: null,
      runAfter: sql`now()`,
      ...(job.cancelRequested ? { finishedAt: sql`now()` } : {}),
    },
    event: { released: true },
  }));
}

/**
 * Cancel a job: a queued one ends at once; a running one gets cancel_requested, which its worker
 * sees at the next heartbeat. Cancelling a cancelled job is a no-op; a finished one is invalid_state.
 */
export async function cancel(db: Db, scope: JobScope, id: string): Promise<Job> {
  requireId(id, 'job');
  return db.transaction(async (tx) => {
    const rows = await tx
      .select()
      .from(jobs)
      .where(and(eq(jobs.id, id), scoped(scope)))
      .for('update');
    const job = one(rows, 'job', id);
    if (job.status === 'queued') {
      const [updated] = await tx
        .update(jobs)
        .set({ status: 'cancelled', cancelRequested: true, finishedAt: sql`now()`, updatedAt: sql`now()` })
        .where(eq(jobs.id, id))
        .returning();
      await statusEvent(tx, updated);
      return updated;
    }
    if (job.status === 'running') {
      if (job.cancelRequested) return job;
      const [updated] = await tx
        .update(jobs)
        .set({ cancelRequested: true, updatedAt: sql`now()` })
        .where(eq(jobs.id, id))
        .returning();
      await tx.insert(jobEvents).values({ jobId: id, tenantId: job.tenantId, type: 'cancel_requested', data: {} });
      return updated;
    }
    if (job.status === 'cancelled') return job;
    throw invalidState(`job '${id}' already ${job.status}`, { status: job.status });
  });
}

/**
 * Put jobs whose lease expired (their worker died or hung) back in the queue after a backoff, or
 * fail them when that was their last attempt. Returns the jobs it changed.
 */
export async function recoverExpired(db: Db, backoff: Backoff, limit = 100): Promise<Job[]> {
  return db.transaction(async (tx) => {
    const expired = await tx
      .select()
      .from(jobs)
      .where(and(eq(jobs.status, 'running'), lte(jobs.leaseExpiresAt, sql`now()`)))
      .orderBy(asc(jobs.leaseExpiresAt))
      .limit(limit)
      .for('update', { skipLocked: true });
    const out: Job[] = [];
    for (const job of expired) {
      const error = formatJobError(LEASE_EXPIRED);
      let patch: Patch;
      let event: Record<string, unknown> = { error: LEASE_EXPIRED, recovered: true };
      if (job.cancelRequested) patch = { status: 'cancelled', error, ...ENDED };
      else if (job.attempts >= job.maxAttempts) patch = { status: 'failed', error, ...ENDED };
      else {
        const delay = backoffMs(job.attempts, backoff);
        patch = { status: 'queued', error, leaseOwner: null, leaseExpiresAt: null, runAfter: inMs(delay) };
        event = { ...event, retryInMs: delay };
      }
      const [updated] = await tx
        .update(jobs)
        .set({ ...patch, updatedAt: sql`now()` })
        .where(eq(jobs.id, job.id))
        .returning();
      await statusEvent(tx, updated, event);
      out.push(updated);
    }
    return out;
  });
}
