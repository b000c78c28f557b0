/**
 * A serving executor: what owns the compute side of serving — the backbone it runs on, the resident
 * adapters (AdapterCache) and the prefix-activation cache — and runs one micro-batch at a time
 * through `executeBatch`. The serving engine keeps the queue and routes each batch to one of its
 * executors (executor-pool.ts).
 *
 * `LocalExecutor` computes on the thread that calls it: the engine's in-process mode
 * (SERVE_WORKERS=0: the CLI, tests) and the body of every executor thread (src/threads/
 * serve-executor.ts). The thread's main-side handle (src/threads/serve-executor-client.ts)
 * implements the same interface, so the engine cannot tell them apart.
 */
import * as tf from '@tensorflow/tfjs';
import { AppError } from '../errors.js';
import type { Backbone, ResidentAdapter } from '../model/index.js';
import { AdapterCache, type AdapterCacheStats } from './adapter-cache.js';
import type { AdapterLoader, AdapterRef } from './adapter-loader.js';
import { executeBatch } from './batch-executor.js';
import type { BatchRun, EngineRequest } from './engine-types.js';
import { PrefixActivationCache, type PrefixActivationCacheStats } from './prefix-activation-cache.js';
import type { BatchEntry } from './types.js';

export interface ExecutorStats {
  adapterCache: AdapterCacheStats;
  prefixCache: PrefixActivationCacheStats;
  /** Live tfjs tensors where this executor computes (its backbone + resident adapters + in flight). */
  tensors: number;
  /** Times the executor was restarted after it died (threads only; 0 in process). */
  restarts: number;
  /** Whether it can compute now (a thread that is starting or restarting is not). */
  ready: boolean;
}

export interface PreloadResult {
  key: string;
  error?: Error;
}

export interface ServeExecutor {
  /** Run one micro-batch; one outcome per entry. Rejects only when the executor itself failed (e.g. a thread died). */
  run(batch: readonly BatchEntry<EngineRequest>[]): Promise<BatchRun>;
  /** Load (and optionally pin) adapters; failures are returned, not thrown. */
  preload(refs: readonly AdapterRef[], pin: boolean): Promise<PreloadResult[]>;
  /** Forget versions (resident ones go now, a load in flight is not kept, pins lifted); how many were resident or loading as far as this side knows. */
  evict(keys: readonly string[]): number;
  isResident(key: string): boolean;
  /** As of now (in process) or as of the thread's last message. */
  stats(): ExecutorStats;
  /** Ready to compute (a thread's first start); rejects if it cannot start. */
  ready(): Promise<void>;
  /** Free every resident adapter and cached activation (and stop a thread). Idempotent. */
  close(): Promise<void>;
}

export interface LocalExecutorOptions {
  readonly backbone: Backbone;
  readonly loader: AdapterLoader;
  readonly adapterCacheBytes: number;
  readonly prefixCacheBytes: number;
  /** Same clock as the batcher (deadlines, queue times). */
  readonly now: () => number;
  readonly onLoad?: (event: { key: string; ms: number; ok: boolean; bytes?: number }) => void;
  /** Told when a version's residency may have changed (loaded, or a value disposed): a thread reports `isResident` of these to the main side. */
  readonly onResidencyChange?: (key: string) => void;
}

export class LocalExecutor implements ServeExecutor {
  private readonly cache: AdapterCache<ResidentAdapter, AdapterRef>;
  private readonly prefixCache: PrefixActivationCache;
  private readonly keyOf = new WeakMap<ResidentAdapter, string>();
  private closed = false;

  constructor(private readonly options: LocalExecutorOptions) {
    const { onResidencyChange } = options;
    this.cache = new AdapterCache<ResidentAdapter, AdapterRef>({
      budgetBytes: options.adapterCacheBytes,
      load: async (key, signal, ref) => {
        if (ref?.key !== key) throw new AppError('internal', `no source known for adapter version '${key}'`);
        const loaded = await options.loader(ref, signal);
        this.keyOf.set(loaded.value, key);
        return loaded;
      },
      dispose: (adapter) => {
        const key = this.keyOf.get(adapter);
        adapter.dispose();
        if (key !== undefined) onResidencyChange?.(key);
      },
      onLoad: (event) => {
        onResidencyChange?.(event.key);
        options.onLoad?.(event);
      },
    });
    const swin = options.backbone.config.swin;
    this.prefixCache = new PrefixActivationCache({
      budgetBytes: options.prefixCacheBytes,
      backboneId: options.backbone.identity,
      // On a Swin, a block that opens a stage reads the patch merging's output, not the previous block's.
      cuttableAt: swin ? (s) => s === 0 || swin.blockStage[s] === swin.blockStage[s - 1] : undefined,
    });
  }

  run(batch: readonly BatchEntry<EngineRequest>[]): Promise<BatchRun> {
    return executeBatch({ backbone: this.options.backbone, cache: this.cache, prefixCache: this.prefixCache, now: this.options.now }, batch);
  }

  preload(refs: readonly AdapterRef[], pin: boolean): Promise<PreloadResult[]> {
    return Promise.all(
      refs.map(async (ref) => {
        if (pin) this.cache.pin(ref.key);
        try {
          (await this.cache.acquire(ref.key, { context: ref })).release();
          return { key: ref.key };
        } catch (err) {
          return { key: ref.key, error: err as Error };
        }
      }),
    );
  }

  evict(keys: readonly string[]): number {
    let found = 0;
    for (const key of keys) {
      if (this.cache.invalidate(key)) found += 1;
      this.cache.unpin(key);
    }
    return found;
  }

  isResident(key: string): boolean {
    return this.cache.has(key);
  }

  stats(): ExecutorStats {
    return {
      adapterCache: this.cache.stats(),
      prefixCache: this.prefixCache.stats(),
      tensors: tf.memory().numTensors,
      restarts: 0,
      ready: !this.closed,
    };
  }

  ready(): Promise<void> {
    return Promise.resolve();
  }

  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.cache.close();
      this.prefixCache.clear();
    }
    return Promise.resolve();
  }
}

/** Several executors' stats as one: counts and bytes add up; latency max/p50/p99 are the worst executor's. */
export function sumExecutorStats(all: readonly ExecutorStats[]): Omit<ExecutorStats, 'ready'> {
  const add = <T extends object>(items: T[]): T => {
    const out = { ...items[0] } as Record<string, unknown>;
    for (const item of items.slice(1)) {
      for (const [k, v] of Object.entries(item)) {
        if (typeof v === 'number') out[k] = (out[k] as number) + v;
      }
    }
    return out as T;
  };
  const caches = all.map((s) => s.adapterCache);
  const latency = caches.map((c) => c.loadLatencyMs);
  return {
    adapterCache: {
      ...add(caches),
      loadLatencyMs: {
        count: latency.reduce((a, l) => a + l.count, 0),
        sum: latency.reduce((a, l) => a + l.sum, 0),
        max: Math.max(...latency.map((l) => l.max)),
        p50: Math.max(...latency.map((l) => l.p50)),
        p99: Math.max(...latency.map((l) => l.p99)),
      },
    },
    prefixCache: add(all.map((s) => s.prefixCache)),
    tensors: all.reduce((a, s) => a + s.tensors, 0),
    restarts: all.reduce((a, s) => a + s.restarts, 0),
  };
}
