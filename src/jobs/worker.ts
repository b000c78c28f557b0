/**
 * Runs jobs from the queue. The worker owns its loop and everything the loop touches (the set of
 * running jobs, their timers and abort controllers); callers only start and stop it.
 *
 * Per job: a heartbeat every lease/3 extends the lease and learns about cancel requests; the
 * handler's AbortSignal fires on cancel, on lease loss, or on shutdown after the grace period.
 * Heartbeats are timers on this thread's event loop, so a handler must not hold the loop for
 * long: compute belongs in a thread (the train job's runs in src/threads/train-job.ts). A handler
 * that blocks the loop past the lease loses its job to another worker's recovery pass.
 * Outcome: returned → succeeded; threw → judged by failure.ts: transient (storage or database
 * out of reach) → retried with backoff without using an attempt; permanent (4xx AppErrors, errors
 * marked `retryable: false`) → failed at once; else retried with backoff up to maxAttempts. The
 * job keeps a tenant-safe code and message; the full error goes to the log with the job id.
 * Aborted by cancel → cancelled; by shutdown → released to the queue; by lease loss → left alone
 * (another worker owns it now). Recording an outcome while the database is briefly unreachable
 * is retried, for up to a lease, so the attempt's result is not lost to the outage.
 */
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import { dbUnavailable } from '../db/errors.js';
import { AppError, isAppError } from '../errors.js';
import type { Job } from '../db/schema.js';
import { judgeFailure } from './failure.js';
import type { JobQueue } from './queue.js';

export type AbortCause = 'cancelled' | 'lease_lost' | 'shutdown';

/** The reason a job's signal carries, so handlers can rethrow it (`signal.throwIfAborted()`). */
export class JobAbortedError extends Error {
  constructor(readonly reason: AbortCause) {
    super(`job aborted: ${reason}`);
    this.name = 'JobAbortedError';
  }
}

export interface JobContext {
  readonly job: Job;
  /** 1 on the first run, 2 on the first retry, … */
  readonly attempt: number;
  readonly signal: AbortSignal;
  /** Store progress on the job and append it to the event stream; call at a modest rate. */
  progress(data: unknown): Promise<void>;
  /** Append a custom event to the job's stream. */
  event(type: string, data?: unknown): Promise<void>;
}

/** Returns the job's result (stored as JSON). */
export type JobHandler = (ctx: JobContext) => Promise<unknown>;

export interface WorkerLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface WorkerOptions {
  queue: JobQueue;
  handlers: Record<string, JobHandler>;
  /** Jobs run at once (default 1). */
  concurrency?: number;
  /** Idle wait between claim attempts (default 1000 ms). */
  pollMs?: number;
  /** Lease owner id (default host/pid/random). */
  owner?: string;
  /** How often to requeue expired leases (default: the lease length). */
  recoverEveryMs?: number;
  logger?: WorkerLogger;
}

const quiet: WorkerLogger = { info() {}, warn() {}, error() {} };

/** A queue call that failed only because the database is briefly unreachable. */
function dbBlip(err: unknown): boolean {
  return (isAppError(err) && err.code === 'unavailable') || dbUnavailable(err) !== undefined;
}

interface Running {
  job: Job;
  abort(cause: AbortCause): void;
  done: Promise<void>;
}

export class Worker {
  readonly owner: string;
  private readonly queue: JobQueue;
  private readonly handlers: Record<string, JobHandler>;
  private readonly kinds: string[];
  private readonly concurrency: number;
  private readonly pollMs: number;
  private readonly recoverEveryMs: number;
  private readonly log: WorkerLogger;
  private readonly running = new Map<string, Running>();
  private loopDone: Promise<void> | undefined;
  private stopping = false;
  private wake: (() => void) | undefined;

  constructor(options: WorkerOptions) {
    this.queue = options.queue;
    this.handlers = options.handlers;
    this.kinds = Object.keys(options.handlers);
    this.concurrency = Math.max(1, options.concurrency ?? 1);
    this.pollMs = options.pollMs ?? 1000;
    this.recoverEveryMs = options.recoverEveryMs ?? options.queue.leaseMs;
    this.owner = options.owner ?? `${os.hostname()}/${process.pid}/${randomUUID().slice(0, 8)}`;
    this.log = options.logger ?? quiet;
  }

  /** Jobs running now. */
  get active(): number {
    return this.running.size;
  }

  start(): void {
    if (this.loopDone !== undefined) throw new AppError('invalid_state', 'worker already started');
    this.loopDone = this.loop();
  }

  /**
   * Stop claiming, give running jobs `graceMs` to finish, then abort them (their jobs go back to
   * the queue) and wait up to `graceMs` more for handlers to honour the signal. A handler that
   * ignores it is abandoned; its lease expires and another worker retries the job.
   */
  async stop(options: { graceMs?: number } = {}): Promise<void> {
    const graceMs = options.graceMs ?? this.queue.leaseMs;
    this.stopping = true;
    this.wake?.();
    await this.loopDone;
    const all = () => Promise.all([...this.running.values()].map((r) => r.done));
    if (!(await within(all(), graceMs))) {
      for (const r of this.running.values()) r.abort('shutdown');
      if (!(await within(all(), graceMs))) {
        this.log.warn({ jobs: [...this.running.keys()] }, 'worker stopped with jobs that ignored their abort signal');
      }
    }
  }

  private async loop(): Promise<void> {
    let lastRecover = 0;
    while (!this.stopping) {
      let claimed = false;
      try {
        if (Date.now() - lastRecover >= this.recoverEveryMs) {
          lastRecover = Date.now();
          const recovered = await this.queue.recoverExpired();
          if (recovered.length > 0) this.log.warn({ jobs: recovered.map((j) => j.id) }, 'requeued jobs with expired leases');
        }
        if (this.running.size < this.concurrency && !this.stopping) {
          const job = await this.queue.claim(this.owner, this.kinds);
          if (job !== undefined) {
            claimed = true;
            this.run(job);
          }
        }
      } catch (err) {
        this.log.error({ err }, 'job queue poll failed');
      }
      // Claim again at once while there was work and a free slot; otherwise wait for a slot or the poll.
      if (!(claimed && this.running.size < this.concurrency)) await this.sleep(this.pollMs);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wake = done;
    });
  }

  private run(job: Job): void {
    const controller = new AbortController();
    let cause: AbortCause | undefined;
    const abort = (c: AbortCause) => {
      if (cause !== undefined) return;
      cause = c;
      controller.abort(new JobAbortedError(c));
    };
    let beating = false;
    const heard = (hb: { held: boolean; cancelRequested: boolean }) => {
      if (!hb.held) abort('lease_lost');
      else if (hb.cancelRequested) abort('cancelled');
    };
    const heartbeat = setInterval(() => {
      if (beating) return;
      beating = true;
      this.queue
        .heartbeat(job.id, this.owner)
        .then(heard)
        .catch((err: unknown) => this.log.warn({ err, job: job.id }, 'heartbeat failed'))
        .finally(() => {
          beating = false;
        });
    }, Math.max(10, Math.floor(this.queue.leaseMs / 3)));

    const ctx: JobContext = {
      job,
      attempt: job.attempts,
      signal: controller.signal,
      progress: async (data) => {
        if (!(await this.queue.progress(job.id, this.owner, data))) abort('lease_lost');
      },
      event: async (type, data) => {
        await this.queue.appendEvent(job, type, data);
      },
    };

    const execute = async () => {
      const handler = this.handlers[job.kind];
      let outcome: { ok: true; result: unknown } | { ok: false; err: unknown };
      try {
        if (handler === undefined) throw new AppError('internal', `no handler for job kind '${job.kind}'`);
        outcome = { ok: true, result: await handler(ctx) };
      } catch (err) {
        outcome = { ok: false, err };
      } finally {
        clearInterval(heartbeat);
      }
      if (cause === 'lease_lost') {
        this.log.warn({ job: job.id }, 'lost the lease of a job; another worker owns it now');
      } else if (outcome.ok) {
        const { result } = outcome;
        await this.record(job, () => this.queue.complete(job.id, this.owner, result));
      } else if (cause === 'cancelled') {
        await this.record(job, () => this.queue.markCancelled(job.id, this.owner));
      } else if (cause === 'shutdown') {
        await this.record(job, () => this.queue.release(job.id, this.owner));
      } else {
        const { kind, error } = judgeFailure(outcome.err);
        const after = await this.record(job, () => this.queue.fail(job.id, this.owner, error, kind));
        this.log.warn(
          { job: job.id, kind: job.kind, tenantId: job.tenantId, err: outcome.err, failure: kind, code: error.code, status: after?.status, attempts: after?.attempts },
          'job attempt failed',
        );
      }
    };

    const done = execute()
      .catch((err: unknown) => this.log.error({ err, job: job.id }, 'could not record a job outcome'))
      .finally(() => {
        this.running.delete(job.id);
        this.wake?.();
      });
    this.running.set(job.id, { job, abort, done });
  }

  /**
   * Write a job's outcome, retrying while the database is briefly unreachable — for up to a lease
   * (after that the lease has expired and recovery hands the job to the next claim anyway).
   */
  private async record<T>(job: Job, write: () => Promise<T>): Promise<T> {
    const end = Date.now() + this.queue.leaseMs;
    for (let delay = 100; ; delay = Math.min(delay * 2, 5_000)) {
      try {
        return await write();
      } catch (err) {
        if (!dbBlip(err) || Date.now() + delay > end) throw err;
        this.log.warn({ err, job: job.id, retryInMs: delay }, 'could not record a job outcome; retrying');
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }
}

async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
