/**
 * The main thread's handle on one serving executor thread (serve-executor.ts): a ServeExecutor
 * the serving engine routes batches to like any other.
 *
 * Crash containment: when the thread dies — it exits, throws, runs out of memory (resourceLimits),
 * or is terminated — every request it had in flight (its one batch, a preload) is failed with a
 * 503 `unavailable` AppError carrying Retry-After, the restart is counted, and a fresh thread is
 * started (at once after a thread that had been serving; with a growing delay, up to 30 s, while
 * starts keep failing). A batch routed to it meanwhile waits for the new thread, or fails the same
 * way if that one cannot start. Nothing in flight goes unanswered. A restarted thread starts cold;
 * pinned adapters are loaded and pinned again.
 */
import type { ResourceLimits, Worker } from 'node:worker_threads';
import { AppError } from '../errors.js';
import type { Logger } from '../log.js';
import type { AdapterCacheStats, AdapterRef, BatchEntry, BatchRun, EngineRequest, ExecutorStats, PreloadResult, PrefixActivationCacheStats, ServeExecutor } from '../serve/index.js';
import { spawnThread } from './spawn.js';
import { decodeOutcomes, encodeBatch, fromWireError, type FromExecutor, type Report, type ServeExecutorData, type ToExecutor } from './serve-protocol.js';

const ENTRY = new URL('./serve-executor.ts', import.meta.url);
const CLOSE_WAIT_MS = 10_000;
const MAX_RESTART_DELAY_MS = 30_000;

export interface ThreadExecutorOptions {
  readonly data: ServeExecutorData;
  /** Floats per preprocessed image (imageSize² × 3). */
  readonly perImage: number;
  /** The engine's clock (deadlines are on it). */
  readonly now?: () => number;
  readonly resourceLimits?: ResourceLimits;
  readonly log?: Logger;
  /** Told of each restart (after the in-flight requests were failed). */
  readonly onRestart?: (info: { index: number; reason: string }) => void;
  /** Delay before restarting after a failed start (doubles per consecutive failure). Default 500 ms. */
  readonly restartDelayMs?: number;
}

interface Pending {
  resolve: (value: never) => void;
  reject: (err: Error) => void;
  kind: 'run' | 'preload';
}

/** Counters of a dead thread are kept, so the summed stats only grow (they are exported as Prometheus counters). */
const CACHE_COUNTERS = ['hits', 'misses', 'coalesced', 'loads', 'loadFailures', 'evictions', 'invalidations', 'disposeFailures'] as const;
const PREFIX_COUNTERS = ['hits', 'misses', 'insertions', 'evictions'] as const;

function emptyStats(): ExecutorStats {
  const adapterCache: AdapterCacheStats = {
    hits: 0, misses: 0, coalesced: 0, loads: 0, loadFailures: 0, evictions: 0, invalidations: 0, disposeFailures: 0,
    residentBytes: 0, residentCount: 0, leasedCount: 0, pinnedKeys: 0, loading: 0, budgetBytes: 0,
    loadLatencyMs: { count: 0, sum: 0, max: 0, p50: 0, p99: 0 },
  };
  const prefixCache: PrefixActivationCacheStats = { hits: 0, misses: 0, insertions: 0, evictions: 0, entries: 0, bytes: 0, budgetBytes: 0 };
  return { adapterCache, prefixCache, tensors: 0, restarts: 0, ready: false };
}

export class ThreadExecutor implements ServeExecutor {
  private worker: Worker | undefined;
  private alive = false;
  private isReady = false;
  private closing: Promise<void> | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private last: ExecutorStats = emptyStats();
  private readonly dead: ExecutorStats = emptyStats();
  private readonly resident = new Set<string>();
  private readonly pinned = new Map<string, AdapterRef>();
  private readyWaiters: Array<{ resolve: () => void; reject: (err: Error) => void }> = [];
  private restarts = 0;
  private failedStarts = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private readonly first: Promise<void>;
  private readonly now: () => number;

  constructor(private readonly options: ThreadExecutorOptions) {
    this.now = options.now ?? Date.now;
    this.first = this.whenReady();
    this.first.catch(() => undefined); // observed by ready(); a later restart may still succeed
    this.spawn();
  }

  get index(): number {
    return this.options.data.index;
  }

  ready(): Promise<void> {
    return this.first;
  }

  async run(batch: readonly BatchEntry<EngineRequest>[]): Promise<BatchRun> {
    if (!this.isReady) await this.whenReady();
    const { pixels, entries } = encodeBatch(batch, this.options.perImage);
    const id = this.nextId++;
    const answer = this.expect<{ outcomes: BatchRun['outcomes']; timings?: BatchRun['timings'] }>(id, 'run');
    this.post({ type: 'run', id, sentAt: this.now(), pixels, perImage: this.options.perImage, entries }, [pixels.buffer as ArrayBuffer]);
    return answer;
  }

  async preload(refs: readonly AdapterRef[], pin: boolean): Promise<PreloadResult[]> {
    if (pin) for (const r of refs) this.pinned.set(r.key, r);
    if (!this.isReady) await this.whenReady();
    const id = this.nextId++;
    const answer = this.expect<PreloadResult[]>(id, 'preload');
    this.post({ type: 'preload', id, refs: refs.map((r) => ({ ...r })), pin });
    return answer;
  }

  evict(keys: readonly string[]): number {
    const found = keys.filter((k) => this.resident.has(k)).length;
    for (const k of keys) {
      this.resident.delete(k);
      this.pinned.delete(k);
    }
    // A starting thread has nothing resident, but may be loading a pinned adapter: it is told too
    // (messages wait in its port until it listens).
    if (this.alive) this.post({ type: 'evict', keys: [...keys] });
    return found;
  }

  isResident(key: string): boolean {
    return this.resident.has(key);
  }

  stats(): ExecutorStats {
    const s = this.last;
    const adapterCache = { ...s.adapterCache };
    for (const k of CACHE_COUNTERS) adapterCache[k] += this.dead.adapterCache[k];
    const prefixCache = { ...s.prefixCache };
    for (const k of PREFIX_COUNTERS) prefixCache[k] += this.dead.prefixCache[k];
    return { adapterCache, prefixCache, tensors: s.tensors, restarts: this.restarts, ready: this.isReady };
  }

  /** Ends the thread now, as a crash would (its requests fail with 503 and it is restarted): for operators' tools and tests. */
  async terminate(): Promise<void> {
    await this.worker?.terminate();
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      clearTimeout(this.restartTimer);
      const worker = this.worker;
      if (worker !== undefined && this.alive) {
        const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
        this.post({ type: 'close' });
        const timer = setTimeout(() => void worker.terminate(), CLOSE_WAIT_MS);
        await exited;
        clearTimeout(timer);
      }
      this.failAll(new AppError('unavailable', 'the serving engine is shutting down', { retryAfterSeconds: 1 }));
    })();
    return this.closing;
  }

  private whenReady(): Promise<void> {
    if (this.isReady) return Promise.resolve();
    if (this.closing !== undefined) return Promise.reject(new AppError('unavailable', 'the serving engine is shutting down', { retryAfterSeconds: 1 }));
    return new Promise((resolve, reject) => this.readyWaiters.push({ resolve, reject }));
  }

  private expect<T>(id: number, kind: Pending['kind']): Promise<T> {
    return new Promise<T>((resolve, reject) => this.pending.set(id, { resolve: resolve as (v: never) => void, reject, kind }));
  }

  private post(message: ToExecutor, transfer: ArrayBuffer[] = []): void {
    this.worker?.postMessage(message, transfer);
  }

  private spawn(): void {
    const worker = spawnThread(ENTRY, this.options.data, { resourceLimits: this.options.resourceLimits });
    this.worker = worker;
    this.alive = true;
    let error: Error | undefined;
    worker.on('message', (msg: FromExecutor) => this.onMessage(msg));
    worker.on('error', (err) => (error = err));
    worker.on('messageerror', (err) => (error = err));
    worker.once('exit', (code) => this.onExit(worker, code, error));
  }

  private apply(report: Report): void {
    this.last = report.stats;
    for (const [key, resident] of report.residency) {
      if (resident) this.resident.add(key);
      else this.resident.delete(key);
    }
  }

  private onMessage(msg: FromExecutor): void {
    if (msg.type === 'closed') return;
    this.apply(msg.report);
    if (msg.type === 'ready') {
      this.isReady = true;
      this.failedStarts = 0;
      for (const w of this.readyWaiters.splice(0)) w.resolve();
      if (this.pinned.size > 0 && this.restarts > 0) {
        void this.preload([...this.pinned.values()], true).catch((err: unknown) => this.options.log?.warn({ err }, 'pinned adapters not reloaded'));
      }
      return;
    }
    if (msg.type === 'report') return;
    const p = this.pending.get(msg.id);
    this.pending.delete(msg.id);
    if (p === undefined) return;
    if (msg.type === 'result') {
      p.resolve({ outcomes: decodeOutcomes(msg.outcomes), timings: msg.timings } as never);
    } else {
      p.resolve(msg.results.map((r) => (r.error === undefined ? { key: r.key } : { key: r.key, error: fromWireError(r.error) })) as never);
    }
  }

  private failAll(error: Error): void {
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) {
      // A preload reports failures per key, as an in-process one would.
      p.reject(error);
    }
  }

  private onExit(worker: Worker, code: number, error: Error | undefined): void {
    if (worker !== this.worker) return;
    this.alive = false;
    const wasReady = this.isReady;
    this.isReady = false;
    // Keep the dead thread's counters; what it held is gone.
    for (const k of CACHE_COUNTERS) this.dead.adapterCache[k] += this.last.adapterCache[k];
    for (const k of PREFIX_COUNTERS) this.dead.prefixCache[k] += this.last.prefixCache[k];
    this.last = emptyStats();
    this.resident.clear();
    if (this.closing !== undefined) {
      for (const w of this.readyWaiters.splice(0)) w.reject(new AppError('unavailable', 'the serving engine is shutting down', { retryAfterSeconds: 1 }));
      return;
    }
    const reason = error !== undefined ? `${error.name}: ${error.message}` : `exit code ${code}`;
    const failure = new AppError('unavailable', `serving executor ${this.index} stopped (${reason}); retry the request`, { retryAfterSeconds: 1 });
    this.failAll(failure);
    if (!wasReady) {
      // It died starting: whoever waits for it is answered now rather than at its deadline.
      for (const w of this.readyWaiters.splice(0)) w.reject(failure);
      this.failedStarts += 1;
    }
    this.restarts += 1;
    this.options.log?.error({ executor: this.index, reason, wasReady }, 'serving executor thread stopped; restarting it');
    this.options.onRestart?.({ index: this.index, reason });
    const delay = this.failedStarts === 0 ? 0 : Math.min(MAX_RESTART_DELAY_MS, (this.options.restartDelayMs ?? 500) * 2 ** (this.failedStarts - 1));
    this.restartTimer = setTimeout(() => {
      if (this.closing === undefined) this.spawn();
    }, delay);
    this.restartTimer.unref();
  }
}
