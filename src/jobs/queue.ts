/**
 * The job queue other layers use: the jobs repository plus the policy it needs (lease length,
 * default attempts, retry backoff), so callers never pass those around.
 */
import type { Config } from '../config.js';
import type { Db } from '../db/open.js';
import * as repo from '../db/repos/jobs.js';
import * as views from '../db/repos/job-views.js';
import type { Backoff, FailureKind, JobError, JobScope, NewJob, TransientBackoff } from '../db/repos/jobs.js';
import type { Job, JobEvent, JobStatus } from '../db/schema.js';
import type { Page } from '../db/repos/util.js';

export type { Backoff, FailureKind, JobError, JobScope, NewJob, TransientBackoff } from '../db/repos/jobs.js';
export { jobErrorOf, safeJobError } from '../db/repos/jobs.js';
export { WEBHOOK_JOB_KIND } from '../db/repos/job-events.js';
export type { Job, JobEvent, JobStatus } from '../db/schema.js';

export interface QueueOptions {
  /** Lease a claim grants; a worker heartbeats at a third of it. */
  leaseMs: number;
  /** Attempts of a job enqueued without its own limit. */
  maxAttempts: number;
  /** Retry delay: base · 2^(attempt-1), capped at max. */
  backoff?: Backoff;
  /** Retries of transient failures (storage / database unreachable), which use up no attempt. */
  transientBackoff?: TransientBackoff;
}

export const DEFAULT_BACKOFF: Backoff = { baseMs: 5_000, maxMs: 5 * 60_000 };

export class JobQueue {
  readonly leaseMs: number;
  readonly maxAttempts: number;
  readonly backoff: Backoff;
  readonly transientBackoff: TransientBackoff;

  constructor(
    readonly db: Db,
    options: QueueOptions,
  ) {
    this.leaseMs = options.leaseMs;
    this.maxAttempts = options.maxAttempts;
    this.backoff = options.backoff ?? DEFAULT_BACKOFF;
    this.transientBackoff = options.transientBackoff ?? repo.DEFAULT_TRANSIENT_BACKOFF;
  }

  static fromConfig(db: Db, config: Pick<Config, 'JOB_LEASE_MS' | 'JOB_MAX_ATTEMPTS'>, backoff?: Backoff): JobQueue {
    return new JobQueue(db, { leaseMs: config.JOB_LEASE_MS, maxAttempts: config.JOB_MAX_ATTEMPTS, backoff });
  }

  /**
   * The queue as the services see it: enqueue, read, cancel. It holds no state of its own (the
   * database does), so a verb may build one from its deps; the lease and attempt policy are the
   * config's, or the defaults where a caller has no config (deletes, which only cancel).
   */
  static of(deps: { database: { db: Db }; config?: Pick<Config, 'JOB_LEASE_MS' | 'JOB_MAX_ATTEMPTS'> }): JobQueue {
    return new JobQueue(deps.database.db, { leaseMs: deps.config?.JOB_LEASE_MS ?? 30_000, maxAttempts: deps.config?.JOB_MAX_ATTEMPTS ?? 3 });
  }

  enqueue(job: NewJob): Promise<Job> {
    return repo.enqueue(this.db, { ...job, maxAttempts: job.maxAttempts ?? this.maxAttempts });
  }

  get(id: string, scope: JobScope): Promise<Job> {
    return repo.get(this.db, scope, id);
  }

  list(scope: JobScope, opts?: Page & { kind?: string; status?: JobStatus[] }): Promise<Job[]> {
    return repo.list(this.db, scope, opts);
  }

  /** Queued → cancelled now; running → cancel requested (the worker aborts at its next heartbeat). */
  cancel(id: string, scope: JobScope): Promise<Job> {
    return repo.cancel(this.db, scope, id);
  }

  /** Cancel every queued or running job in `jobs` (best effort: one that ended meanwhile is left alone). */
  async cancelActive(jobs: readonly Job[], scope: JobScope): Promise<void> {
    for (const job of jobs) {
      if (job.status === 'queued' || job.status === 'running') await this.cancel(job.id, scope).catch(() => {});
    }
  }

  /** A tenant's jobs that trained any of `adapterIds`, newest first. */
  listForAdapters(tenantId: string, adapterIds: readonly string[]): Promise<Job[]> {
    return views.listForAdapters(this.db, tenantId, adapterIds);
  }

  /** Jobs of `kind` made for `jobId` (its webhook deliveries), oldest first. */
  listFollowUps(scope: JobScope, kind: string, jobId: string): Promise<Job[]> {
    return views.listFollowUps(this.db, scope, kind, jobId);
  }

  /** Jobs of `kind` by status (for metrics; all processes sharing the database). */
  countByStatus(kind: string): Promise<Partial<Record<JobStatus, number>>> {
    return views.countByStatus(this.db, kind);
  }

  claim(owner: string, kinds?: readonly string[]): Promise<Job | undefined> {
    return repo.claim(this.db, owner, this.leaseMs, kinds);
  }

  /** Extend the lease (by `leaseMs`, default the queue's) and learn whether a cancel was asked. */
  heartbeat(id: string, owner: string, progress?: unknown, leaseMs = this.leaseMs): Promise<{ held: boolean; cancelRequested: boolean }> {
    return repo.heartbeat(this.db, id, owner, Math.max(leaseMs, this.leaseMs), progress);
  }

  progress(id: string, owner: string, progress: unknown): Promise<boolean> {
    return repo.setProgress(this.db, id, owner, progress);
  }

  complete(id: string, owner: string, result?: unknown): Promise<Job | undefined> {
    return repo.complete(this.db, id, owner, result);
  }

  /** Record a failed attempt; `kind` says how it counts (see repo.fail). */
  fail(id: string, owner: string, error: JobError, kind: FailureKind = 'retryable'): Promise<Job | undefined> {
    return repo.fail(this.db, id, owner, error, { kind, backoff: this.backoff, transient: this.transientBackoff });
  }

  markCancelled(id: string, owner: string): Promise<Job | undefined> {
    return repo.markCancelled(this.db, id, owner);
  }

  release(id: string, owner: string): Promise<Job | undefined> {
    return repo.release(this.db, id, owner);
  }

  recoverExpired(): Promise<Job[]> {
    return repo.recoverExpired(this.db, this.backoff);
  }

  appendEvent(job: Pick<Job, 'id' | 'tenantId'>, type: string, data?: unknown): Promise<JobEvent> {
    return repo.appendEvent(this.db, { jobId: job.id, tenantId: job.tenantId, type, data });
  }

  listEvents(jobId: string, scope: JobScope, afterId = 0, limit?: number): Promise<JobEvent[]> {
    return repo.listEvents(this.db, jobId, scope, afterId, limit);
  }
}

export function isTerminal(status: JobStatus): boolean {
  return repo.TERMINAL.includes(status);
}
