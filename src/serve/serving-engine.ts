/**
 * The serving engine: one shared backbone answering classify requests of every tenant. It owns
 * the cross-tenant batcher (queues, fairness, backpressure, continuous batching) and its executors
 * (executor-pool.ts): each executor holds the resident adapters and the prefix-activation cache and
 * runs a batch (shared prefix → per-adapter CSN → batched suffix → heads) — on this thread
 * (LocalExecutor) or on an executor thread (src/threads/, SERVE_WORKERS), which the engine cannot
 * tell apart.
 *
 * Callers name adapters by immutable version id (AdapterRef.key): resolving names and aliases is
 * the service's job, per request, so a newly published version is seen by the next request. A
 * deleted version leaves through `evictVersions` (the adapter and tenant deletes call it). The
 * engine is the one owner of its state: the executor returns each batch's timings and the engine
 * sums them here.
 */
import type { Config } from '../config.js';
import { AppError } from '../errors.js';
import type { BlobStore } from '../storage/index.js';
import type { Backbone } from '../model/index.js';
import type { AdapterCacheStats } from './adapter-cache.js';
import { blobAdapterLoader, type AdapterLoader, type AdapterRef } from './adapter-loader.js';
import { Batcher, type BatcherStats } from './batcher.js';
import type { BatchTimings, EngineImage, EngineRequest, ItemResult } from './batch-executor.js';
import { LocalExecutor, type ServeExecutor } from './executor.js';
import { ExecutorPool } from './executor-pool.js';
import type { PrefixActivationCacheStats } from './prefix-activation-cache.js';

export interface ServingEngineOptions {
  /** What requests are checked against (image size); with `executors` the executors compute on their own copy. */
  readonly backbone: Backbone;
  /**
   * Where batches run. Default: one LocalExecutor on this thread over `backbone`, `loader` and the
   * cache budgets below. The composition root passes executor threads here (SERVE_WORKERS); each
   * owns its own caches, so the three options below are then unused.
   */
  readonly executors?: readonly ServeExecutor[];
  /** Loads one adapter version (e.g. blobAdapterLoader(blobs, backbone)); required without `executors`. */
  readonly loader?: AdapterLoader;
  /** ADAPTER_CACHE_BYTES */
  readonly adapterCacheBytes: number;
  /** PREFIX_CACHE_BYTES (0 = off, the default). */
  readonly prefixCacheBytes?: number;
  /** BATCH_MAX_SIZE (suffix rows: an image counts once per adapter it goes to). */
  readonly maxBatchSize: number;
  /** BATCH_MAX_WAIT_MS: 0 = continuous batching (a batch starts as soon as an executor is idle). */
  readonly maxWaitMs: number;
  /** QUEUE_MAX_TOTAL, QUEUE_MAX_PER_TENANT (requests). */
  readonly queueMaxTotal: number;
  readonly queueMaxPerTenant: number;
  /** REQUEST_DEADLINE_MS: default time a request may wait in the queue. */
  readonly requestDeadlineMs: number;
  /** Clock for deadlines and queue times (default Date.now). */
  readonly now?: () => number;
  readonly onBatch?: (info: { requests: number; images: number; ms: number; ok: boolean }) => void;
  readonly onLoad?: (event: { key: string; ms: number; ok: boolean; bytes?: number }) => void;
}

export interface ClassifyRequest {
  readonly tenantId: string;
  readonly adapter: AdapterRef;
  readonly images: readonly EngineImage[];
  /** Absolute deadline on the engine clock; default now + requestDeadlineMs. */
  readonly deadline?: number;
}

export interface FanOutRequest {
  readonly tenantId: string;
  readonly image: EngineImage;
  /** The caller's adapters; the same version may appear twice (answered twice). */
  readonly adapters: readonly AdapterRef[];
  readonly deadline?: number;
}

/** Sums over executed batches. */
export interface BatchTimingTotals extends BatchTimings {
  batches: number;
}

export interface EngineStats {
  /** Summed over the executors (counts and bytes add up; load latency p50/p99/max: the worst executor's). */
  adapterCache: AdapterCacheStats;
  batcher: BatcherStats;
  prefixCache: PrefixActivationCacheStats;
  /** Sums over executed batches (ms of the whole batch, not per request). */
  batches: BatchTimingTotals;
  /** Live tfjs tensors where the executors compute (backbone + resident adapters + anything in flight), summed. */
  tensors: number;
  /** Executors (threads, or the one in-process executor), busy and ready ones, restarts after a crash (all time). */
  executors: { count: number; busy: number; ready: number; restarts: number; batchesByExecutor: number[] };
  closed: boolean;
}

export class ServingEngine {
  private readonly pool: ExecutorPool;
  private readonly batcher: Batcher<EngineRequest, ItemResult[]>;
  private readonly totals: BatchTimingTotals = { batches: 0, images: 0, rows: 0, loadMs: 0, prefixMs: 0, adapterMs: 0 };
  private readonly now: () => number;
  private closing: Promise<void> | undefined;

  constructor(private readonly options: ServingEngineOptions) {
    this.now = options.now ?? Date.now;
    let executors = options.executors;
    if (executors === undefined) {
      if (options.loader === undefined) throw new AppError('config_invalid', 'the serving engine needs a loader or executors');
      executors = [
        new LocalExecutor({
          backbone: options.backbone,
          loader: options.loader,
          adapterCacheBytes: options.adapterCacheBytes,
          prefixCacheBytes: options.prefixCacheBytes ?? 0,
          now: this.now,
          onLoad: options.onLoad,
        }),
      ];
    }
    this.pool = new ExecutorPool(executors);
    this.batcher = new Batcher<EngineRequest, ItemResult[]>({
      concurrency: this.pool.size,
      maxBatchSize: options.maxBatchSize,
      maxWaitMs: options.maxWaitMs,
      queueMaxTotal: options.queueMaxTotal,
      queueMaxPerTenant: options.queueMaxPerTenant,
      now: this.now,
      costOf: (req) => req.items.reduce((a, it) => a + it.adapterKeys.length, 0),
      execute: async (batch) => {
        const run = await this.pool.run(batch);
        if (run.timings !== undefined) this.addTimings(run.timings);
        return run.outcomes;
      },
      onBatch: options.onBatch,
    });
  }

  /** The engine as configured (ADAPTER_CACHE_BYTES, PREFIX_CACHE_BYTES, BATCH_*, QUEUE_*, REQUEST_DEADLINE_MS). */
  static fromConfig(
    config: Pick<
      Config,
      | 'ADAPTER_CACHE_BYTES' | 'PREFIX_CACHE_BYTES' | 'BATCH_MAX_SIZE' | 'BATCH_MAX_WAIT_MS'
      | 'QUEUE_MAX_TOTAL' | 'QUEUE_MAX_PER_TENANT' | 'REQUEST_DEADLINE_MS' | 'SERVE_PRECISION'
    >,
    backbone: Backbone,
    blobs: BlobStore,
    overrides: Partial<ServingEngineOptions> = {},
  ): ServingEngine {
    return new ServingEngine({
      backbone,
      loader: blobAdapterLoader(blobs, backbone, { precision: config.SERVE_PRECISION }),
      adapterCacheBytes: config.ADAPTER_CACHE_BYTES,
      prefixCacheBytes: config.PREFIX_CACHE_BYTES,
      maxBatchSize: config.BATCH_MAX_SIZE,
      maxWaitMs: config.BATCH_MAX_WAIT_MS,
      queueMaxTotal: config.QUEUE_MAX_TOTAL,
      queueMaxPerTenant: config.QUEUE_MAX_PER_TENANT,
      requestDeadlineMs: config.REQUEST_DEADLINE_MS,
      ...overrides,
    });
  }

  get backbone(): Backbone {
    return this.options.backbone;
  }

  /** Several images through one adapter version; one result per image, in order. */
  classify(req: ClassifyRequest): Promise<ItemResult[]> {
    return this.submit({
      tenantId: req.tenantId,
      deadline: req.deadline ?? this.now() + this.options.requestDeadlineMs,
      refs: [req.adapter],
      items: req.images.map((payload) => ({ payload, adapterKeys: [req.adapter.key] })),
    });
  }

  /** One image through several adapter versions: the prefix runs once; answers in adapter order. */
  async classifyFanOut(req: FanOutRequest): Promise<ItemResult> {
    if (req.adapters.length === 0) throw new AppError('validation_failed', 'fan-out needs at least one adapter');
    const [result] = await this.submit({
      tenantId: req.tenantId,
      deadline: req.deadline ?? this.now() + this.options.requestDeadlineMs,
      refs: req.adapters,
      items: [{ payload: req.image, adapterKeys: req.adapters.map((a) => a.key) }],
    });
    return result;
  }

  /** The general form: any images, each to any of the request's adapters. */
  submit(request: EngineRequest): Promise<ItemResult[]> {
    const size = this.options.backbone.config.imageSize;
    const per = size * size * 3;
    for (const item of request.items) {
      if (!(item.payload.pixels instanceof Float32Array) || item.payload.pixels.length !== per) {
        return Promise.reject(new AppError('bad_request', `an image must be ${size}×${size}×3 float32 values (${per}), preprocessed`));
      }
      if (item.adapterKeys.length === 0) return Promise.reject(new AppError('validation_failed', 'an image needs at least one adapter'));
      for (const key of item.adapterKeys) {
        if (!request.refs.some((r) => r.key === key)) {
          return Promise.reject(new AppError('internal', `adapter version '${key}' is named without a reference`));
        }
      }
    }
    return this.batcher.submit(request);
  }

  /** Load (and optionally pin) adapters ahead of traffic; failures are returned, not thrown. */
  preload(refs: readonly AdapterRef[], opts: { pin?: boolean } = {}): Promise<Array<{ key: string; error?: Error }>> {
    return this.pool.preload(refs, opts.pin === true);
  }

  /** Resolves once every executor has started (threads load their backbone first); rejects if one cannot. */
  ready(): Promise<void> {
    return this.pool.ready();
  }

  /**
   * Forget deleted adapter versions (by version id): resident ones are dropped now (disposed once
   * the batches holding them finish), a load in flight is not kept, and a pin is lifted. The next
   * request naming one loads it again, or fails if its file is gone. Returns how many were resident
   * or loading (in any executor; for a thread, as of its last message). Every executor is told;
   * a thread forgets them when its event loop next turns (after the batch it runs, if any). The
   * prefix-activation cache needs nothing: it is keyed by image, not by adapter.
   */
  evictVersions(versionIds: Iterable<string>): number {
    return this.pool.evict(versionIds);
  }

  /** Whether a version is resident in an executor's adapter cache (a thread's: as of its last message). */
  isResident(versionId: string): boolean {
    return this.pool.isResident(versionId);
  }

  private addTimings(t: BatchTimings): void {
    const s = this.totals;
    s.batches += 1;
    s.images += t.images;
    s.rows += t.rows;
    s.loadMs += t.loadMs;
    s.prefixMs += t.prefixMs;
    s.adapterMs += t.adapterMs;
  }

  stats(): EngineStats {
    const pool = this.pool.stats();
    return {
      adapterCache: pool.adapterCache,
      batcher: this.batcher.stats(),
      prefixCache: pool.prefixCache,
      batches: { ...this.totals },
      tensors: pool.tensors,
      executors: { count: pool.count, busy: pool.busy, ready: pool.ready, restarts: pool.restarts, batchesByExecutor: pool.batchesByExecutor },
      closed: this.closing !== undefined,
    };
  }

  /** Refuse new requests ('unavailable') and finish the queued ones. */
  drain(): Promise<void> {
    return this.batcher.drain();
  }

  /** Drain, then free every resident adapter and cached activation (and stop executor threads). Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.batcher.drain();
      await this.pool.close();
    })();
    return this.closing;
  }
}
