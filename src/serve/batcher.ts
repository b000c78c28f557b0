/**
 * The I/O shell around the scheduler policy: the one owner of the queue state. It admits requests
 * (or rejects them at once with a typed error), sleeps until the policy says a batch is ready, runs
 * up to `concurrency` batches at once — one per serving executor (a forward is CPU-bound: two on one
 * executor would only contend) — and routes each request's outcome back to its caller. With
 * maxWaitMs 0 this is continuous batching: a batch starts as soon as an executor is idle, and the
 * next one fills while it runs.
 *
 * The executor is a parameter: the serving engine plugs the shared-backbone forward in here.
 * A failing executor fails only the requests of that batch; the batcher keeps serving.
 */
import type { Config } from '../config.js';
import { AppError, type ErrorCode } from '../errors.js';
import { createSchedulerState, enqueue, nextBatch, tenantDepths, type Schedulable, type SchedulerState } from './scheduler-policy.js';
import type { BatchEntry, ItemOutcome, Queued } from './types.js';

export type BatchExecutor<Req, R> = (batch: readonly BatchEntry<Req>[]) => Promise<readonly ItemOutcome<R>[]>;

export interface BatcherOptions<Req, R> {
  /** Most images (cost units) per batch — BATCH_MAX_SIZE. */
  readonly maxBatchSize: number;
  /** Longest the oldest request waits for a batch to fill — BATCH_MAX_WAIT_MS. */
  readonly maxWaitMs: number;
  /** QUEUE_MAX_TOTAL and QUEUE_MAX_PER_TENANT (requests). */
  readonly queueMaxTotal: number;
  readonly queueMaxPerTenant: number;
  /** Batches run at once (the number of executors; default 1). */
  readonly concurrency?: number;
  /** Runs one batch; returns one outcome per entry, in order. Throwing fails the whole batch. */
  readonly execute: BatchExecutor<Req, R>;
  /** What a request counts toward maxBatchSize (default: its number of images). */
  readonly costOf?: (request: Req) => number;
  /** Clock in ms, the same clock request deadlines use (default `Date.now`). */
  readonly now?: () => number;
  readonly setTimer?: (fn: () => void, ms: number) => unknown;
  readonly clearTimer?: (handle: unknown) => void;
  /** How many recent batch sizes `stats().lastBatchSizes` keeps (default 64). */
  readonly recentBatches?: number;
  /** Observer per finished batch (e.g. prom-client metrics). */
  readonly onBatch?: (info: { requests: number; images: number; ms: number; ok: boolean }) => void;
}

/** The batcher's limits as configured (BATCH_MAX_SIZE, BATCH_MAX_WAIT_MS, QUEUE_MAX_TOTAL, QUEUE_MAX_PER_TENANT). */
export function batcherLimitsFromConfig(
  config: Pick<Config, 'BATCH_MAX_SIZE' | 'BATCH_MAX_WAIT_MS' | 'QUEUE_MAX_TOTAL' | 'QUEUE_MAX_PER_TENANT'>,
): Pick<BatcherOptions<unknown, unknown>, 'maxBatchSize' | 'maxWaitMs' | 'queueMaxTotal' | 'queueMaxPerTenant'> {
  return {
    maxBatchSize: config.BATCH_MAX_SIZE,
    maxWaitMs: config.BATCH_MAX_WAIT_MS,
    queueMaxTotal: config.QUEUE_MAX_TOTAL,
    queueMaxPerTenant: config.QUEUE_MAX_PER_TENANT,
  };
}

export interface BatcherStats {
  queueDepth: number;
  queuedImages: number;
  queueDepthByTenant: Record<string, number>;
  /** Requests in the batches being executed now. */
  inFlight: number;
  /** Batches being executed now. */
  running: number;
  draining: boolean;
  batchesRun: number;
  batchFailures: number;
  /** Requests answered with a value / failed by the executor. */
  completed: number;
  failed: number;
  /** Images per recent batch, oldest first. */
  lastBatchSizes: number[];
  /** Batches by image count (all time). */
  batchSizeHistogram: Record<number, number>;
  /** Requests turned away or timed out in the queue, by error code. */
  rejections: Partial<Record<ErrorCode, number>>;
  /** Smoothed executor throughput; null before the first batch. */
  imagesPerSecond: number | null;
}

interface Waiting<R> {
  resolve: (value: R) => void;
  reject: (err: Error) => void;
}

export class Batcher<Req extends Schedulable, R> {
  private readonly state: SchedulerState<Req> = createSchedulerState();
  private readonly waiting = new Map<number, Waiting<R>>();
  private readonly now: () => number;
  private readonly setTimer: (fn: () => void, ms: number) => unknown;
  private readonly clearTimer: (handle: unknown) => void;
  private timer: { handle: unknown; at: number } | undefined;
  private pumpQueued = false;
  private inFlight = 0;
  private running = 0;
  private readonly concurrency: number;
  private draining = false;
  private drainWaiters: (() => void)[] = [];
  private imagesPerSecond: number | null = null;
  private readonly counters = { batchesRun: 0, batchFailures: 0, completed: 0, failed: 0 };
  private readonly lastSizes: number[] = [];
  private readonly histogram: Record<number, number> = {};
  private readonly rejections: Partial<Record<ErrorCode, number>> = {};

  constructor(private readonly options: BatcherOptions<Req, R>) {
    if (!(options.maxBatchSize >= 1) || !(options.maxWaitMs >= 0) || !(options.queueMaxTotal >= 1) || !(options.queueMaxPerTenant >= 1)) {
      throw new AppError('config_invalid', 'batcher limits must be positive');
    }
    this.concurrency = options.concurrency ?? 1;
    if (!(this.concurrency >= 1)) throw new AppError('config_invalid', 'batcher concurrency must be at least 1');
    this.now = options.now ?? Date.now;
    this.setTimer = options.setTimer ?? ((fn, ms) => setTimeout(fn, ms));
    this.clearTimer = options.clearTimer ?? ((h) => clearTimeout(h as ReturnType<typeof setTimeout>));
  }

  /** Queue a request; settles with its result, or rejects with a typed AppError (queue_full at once). */
  submit(request: Req): Promise<R> {
    if (this.draining) {
      return this.rejectNow(new AppError('unavailable', 'the server is shutting down', { retryAfterSeconds: 1 }));
    }
    const admission = enqueue(this.state, request, this.now(), {
      maxTotal: this.options.queueMaxTotal,
      maxPerTenant: this.options.queueMaxPerTenant,
      retryAfterSeconds: this.retryAfterEstimate(),
      costOf: this.options.costOf,
    });
    if (!admission.ok) return this.rejectNow(admission.error);
    const promise = new Promise<R>((resolve, reject) => this.waiting.set(admission.queued.seq, { resolve, reject }));
    this.schedulePump();
    return promise;
  }

  /**
   * Graceful shutdown: refuse new requests ('unavailable'), run everything queued without waiting
   * for batches to fill, and resolve once the queue is empty and no batch is running.
   */
  drain(): Promise<void> {
    this.draining = true;
    const done = new Promise<void>((resolve) => this.drainWaiters.push(resolve));
    this.schedulePump();
    return done;
  }

  stats(): BatcherStats {
    return {
      queueDepth: this.state.total,
      queuedImages: this.state.totalCost,
      queueDepthByTenant: tenantDepths(this.state),
      inFlight: this.inFlight,
      running: this.running,
      draining: this.draining,
      ...this.counters,
      lastBatchSizes: [...this.lastSizes],
      batchSizeHistogram: { ...this.histogram },
      rejections: { ...this.rejections },
      imagesPerSecond: this.imagesPerSecond,
    };
  }

  private rejectNow(error: AppError): Promise<R> {
    this.rejections[error.code] = (this.rejections[error.code] ?? 0) + 1;
    return Promise.reject(error);
  }

  /** Coalesce a burst of submits into one scheduling decision. */
  private schedulePump(): void {
    if (this.pumpQueued) return;
    this.pumpQueued = true;
    queueMicrotask(() => {
      this.pumpQueued = false;
      this.pump();
    });
  }

  private pump(): void {
    // Every executor busy: a finishing batch pumps again. Requests that arrive meanwhile form the next batch.
    while (this.running < this.concurrency) {
      const now = this.now();
      const decision = nextBatch(this.state, now, {
        maxBatchSize: this.options.maxBatchSize,
        maxWaitMs: this.options.maxWaitMs,
        flush: this.draining,
      });
      for (const q of decision.expired) {
        this.fail(q, new AppError('deadline_exceeded', 'the request waited in the queue past its deadline', { retryAfterSeconds: this.retryAfterEstimate() }));
        this.rejections.deadline_exceeded = (this.rejections.deadline_exceeded ?? 0) + 1;
      }
      if (decision.kind === 'batch') {
        this.cancelTimer();
        void this.run(decision.batch);
        continue;
      }
      if (decision.kind === 'wait') {
        this.armTimer(decision.until, now);
      } else {
        this.cancelTimer();
        if (this.draining && this.running === 0) for (const resolve of this.drainWaiters.splice(0)) resolve();
      }
      return;
    }
  }

  private async run(batch: Queued<Req>[]): Promise<void> {
    const startedAt = this.now();
    const entries: BatchEntry<Req>[] = batch.map((q) => ({ ...q, startedAt }));
    const images = batch.reduce((a, q) => a + q.cost, 0);
    this.inFlight += batch.length;
    this.running += 1;
    let ok = true;
    try {
      const outcomes = await Promise.resolve().then(() => this.options.execute(entries));
      if (!Array.isArray(outcomes) || outcomes.length !== batch.length) {
        throw new AppError('internal', `batch executor returned ${Array.isArray(outcomes) ? outcomes.length : 'no'} outcomes for ${batch.length} requests`);
      }
      batch.forEach((q, i) => {
        const outcome = outcomes[i];
        if (outcome?.ok === true) this.succeed(q, outcome.value);
        else this.fail(q, outcome?.ok === false ? outcome.error : new AppError('internal', 'batch executor returned a malformed outcome'));
      });
    } catch (err) {
      ok = false;
      this.counters.batchFailures += 1;
      const error = err instanceof Error ? err : new AppError('internal', 'batch execution failed', { cause: err });
      for (const q of batch) this.fail(q, error);
    } finally {
      const ms = this.now() - startedAt;
      this.recordBatch(images, ms);
      this.options.onBatch?.({ requests: batch.length, images, ms, ok });
      this.inFlight -= batch.length;
      this.running -= 1;
      // The next batch starts after pending I/O had its turn: batches chained through microtasks
      // would run back to back while the queue stays full, and no health probe, heartbeat or SSE
      // write would be answered until it drained.
      setImmediate(() => this.pump());
    }
  }

  private succeed(q: Queued<Req>, value: R): void {
    const w = this.waiting.get(q.seq);
    this.waiting.delete(q.seq);
    this.counters.completed += 1;
    w?.resolve(value);
  }

  private fail(q: Queued<Req>, error: Error): void {
    const w = this.waiting.get(q.seq);
    this.waiting.delete(q.seq);
    this.counters.failed += 1;
    w?.reject(error);
  }

  private recordBatch(images: number, ms: number): void {
    this.counters.batchesRun += 1;
    this.histogram[images] = (this.histogram[images] ?? 0) + 1;
    this.lastSizes.push(images);
    if (this.lastSizes.length > (this.options.recentBatches ?? 64)) this.lastSizes.shift();
    // Throughput for Retry-After hints; a smoothed rate so one odd batch does not swing it.
    const rate = images / Math.max(ms, 1) * 1000;
    this.imagesPerSecond = this.imagesPerSecond === null ? rate : 0.8 * this.imagesPerSecond + 0.2 * rate;
  }

  /** Seconds until the current backlog (plus one batch) is likely served; 1..60. */
  private retryAfterEstimate(): number {
    if (this.imagesPerSecond === null || this.imagesPerSecond <= 0) return 1;
    const seconds = (this.state.totalCost + this.options.maxBatchSize) / this.imagesPerSecond;
    return Math.min(60, Math.max(1, Math.ceil(seconds)));
  }

  private armTimer(at: number, now: number): void {
    if (this.timer !== undefined && this.timer.at <= at) return;
    this.cancelTimer();
    const handle = this.setTimer(() => {
      this.timer = undefined;
      this.pump();
    }, Math.max(0, at - now));
    this.timer = { handle, at };
  }

  private cancelTimer(): void {
    if (this.timer === undefined) return;
    this.clearTimer(this.timer.handle);
    this.timer = undefined;
  }
}
