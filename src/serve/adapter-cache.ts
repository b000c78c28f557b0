/**
 * Resident adapters under a byte budget: on-demand loading, LRU eviction, pinning, single-flight.
 *
 * Generic over the loaded value so the policy is testable with plain objects and later holds model
 * adapters (whose `dispose` frees tensors). The loader is a parameter: the serving engine passes one
 * that reads adapter files from the blob store. What a load needs beyond the key (where the file
 * is) travels with the acquire that starts it, as its load context `C`: no registry on the side.
 *
 * Keys are immutable adapter-version ids. Resolving an alias ("latest") to a version id is the
 * caller's job, done per request before `acquire`: that is what makes a newly published version
 * visible to the next request while requests already holding a lease finish on the old one. The
 * cache therefore never checks freshness; `invalidate` is how a deleted version leaves it (the
 * serving engine's `evictVersions`, called by the adapter and tenant deletes).
 *
 * Lifetime rules: a value is disposed exactly once, and never while a lease on it is held. Entries
 * with live leases or a pin are never evicted. Eviction is by least-recent use (acquire and release
 * both count as use). A value larger than the whole budget still loads and is served; it does not
 * push other entries out, and it is dropped as soon as its last lease is released (unless pinned).
 */
import { performance } from 'node:perf_hooks';
import { AppError } from '../errors.js';
import { LatencyWindow } from './latency-window.js';

export interface Loaded<T> {
  readonly value: T;
  /** Memory the value holds, as the budget should count it. */
  readonly bytes: number;
}

export interface AdapterCacheOptions<T, C = undefined> {
  readonly budgetBytes: number;
  /**
   * Load one key. `context` is the load context of the acquire that started the load (acquires
   * that join it share it: a key is immutable, so any caller's context for it says the same).
   * The signal aborts when the cache is closed while the load is in flight.
   */
  readonly load: (key: string, signal: AbortSignal, context: C | undefined) => Promise<Loaded<T>>;
  /** Free a value (e.g. its tensors). Called once per loaded value, never while leased. */
  readonly dispose: (value: T) => void;
  /** Clock in ms for load latency; default `performance.now`. */
  readonly now?: () => number;
  /** How many recent load latencies the p50/p99 are computed over (default 1024). */
  readonly latencyWindow?: number;
  /** Observer for each finished load (e.g. a prom-client histogram). */
  readonly onLoad?: (event: { key: string; ms: number; ok: boolean; bytes?: number }) => void;
}

export interface AcquireOptions<C> {
  /** Stop waiting (the load carries on and is cached for the next request). */
  readonly signal?: AbortSignal;
  /** Passed to the loader when this acquire starts a load (e.g. where the adapter file is). */
  readonly context?: C;
}

export interface Lease<T> {
  readonly key: string;
  readonly value: T;
  /** Give the value back; idempotent. Until then the value is neither evicted nor disposed. */
  release(): void;
}

export interface AdapterCacheStats {
  hits: number;
  /** Acquires that found nothing resident (includes those that joined a load in flight). */
  misses: number;
  /** Misses served by joining a load already in flight (single-flight). */
  coalesced: number;
  loads: number;
  loadFailures: number;
  evictions: number;
  invalidations: number;
  disposeFailures: number;
  /** Loaded values not yet disposed (cached, or detached but still leased). */
  residentBytes: number;
  residentCount: number;
  leasedCount: number;
  pinnedKeys: number;
  loading: number;
  budgetBytes: number;
  /** Successful loads: all-time count/sum/max, p50/p99 over the recent window. */
  loadLatencyMs: { count: number; sum: number; max: number; p50: number; p99: number };
}

interface Entry<T> {
  readonly key: string;
  readonly value: T;
  readonly bytes: number;
  leases: number;
  /** In the LRU map; false once evicted or invalidated (disposed at last release). */
  cached: boolean;
  disposed: boolean;
}

interface Waiter<T> {
  resolve: (lease: Lease<T>) => void;
  reject: (err: Error) => void;
  done: boolean;
}

interface Flight<T> {
  readonly controller: AbortController;
  readonly waiters: Waiter<T>[];
  /** Invalidated while loading: serve the waiters, do not cache. */
  invalidated: boolean;
}

export class AdapterCache<T, C = undefined> {
  private readonly entries = new Map<string, Entry<T>>(); // insertion order = LRU order
  private readonly flights = new Map<string, Flight<T>>();
  private readonly pinned = new Set<string>();
  private readonly latency: LatencyWindow;
  private closed = false;
  /** Bytes of cached entries that count toward the budget (oversized ones do not). */
  private accountedBytes = 0;
  private readonly counters = {
    hits: 0, misses: 0, coalesced: 0, loads: 0, loadFailures: 0, evictions: 0, invalidations: 0, disposeFailures: 0,
    residentBytes: 0, residentCount: 0,
  };
  private readonly now: () => number;

  constructor(private readonly options: AdapterCacheOptions<T, C>) {
    if (!(options.budgetBytes >= 0)) throw new AppError('config_invalid', 'adapter cache budget must be ≥ 0 bytes');
    this.now = options.now ?? (() => performance.now());
    this.latency = new LatencyWindow(options.latencyWindow ?? 1024);
  }

  /** Get a lease on `key`, loading it if needed (one load however many callers wait for it). */
  acquire(key: string, opts: AcquireOptions<C> = {}): Promise<Lease<T>> {
    if (this.closed) return Promise.reject(new AppError('unavailable', 'adapter cache is closed'));
    const entry = this.entries.get(key);
    if (entry !== undefined) {
      this.counters.hits += 1;
      this.touch(entry);
      return Promise.resolve(this.lease(entry));
    }
    this.counters.misses += 1;
    let flight = this.flights.get(key);
    if (flight === undefined) flight = this.startLoad(key, opts.context);
    else this.counters.coalesced += 1;
    const f = flight;
    return new Promise<Lease<T>>((resolve, reject) => {
      const waiter: Waiter<T> = { resolve, reject, done: false };
      f.waiters.push(waiter);
      const signal = opts.signal;
      if (signal === undefined) return;
      const abandon = () => {
        if (waiter.done) return;
        waiter.done = true; // the load carries on: its result is cached for the next request
        reject(
          signal.reason instanceof AppError
            ? signal.reason
            : new AppError('deadline_exceeded', `gave up waiting for adapter '${key}'`, { cause: signal.reason }),
        );
      };
      if (signal.aborted) abandon();
      else signal.addEventListener('abort', abandon, { once: true });
    });
  }

  /** Drop `key` (e.g. its version was deleted). A load in flight is served to its waiters, not cached. */
  invalidate(key: string): boolean {
    const flight = this.flights.get(key);
    if (flight !== undefined) flight.invalidated = true;
    const entry = this.entries.get(key);
    if (entry !== undefined) this.uncache(entry, false);
    const found = entry !== undefined || flight !== undefined;
    if (found) this.counters.invalidations += 1;
    return found;
  }

  /** Keep `key` resident once loaded (hot adapters). Pinning does not load; acquire does. */
  pin(key: string): void {
    this.pinned.add(key);
  }

  unpin(key: string): void {
    if (!this.pinned.delete(key)) return;
    const entry = this.entries.get(key);
    if (entry !== undefined && entry.leases === 0 && entry.bytes > this.options.budgetBytes) this.uncache(entry, true);
    this.enforceBudget();
  }

  /** Resident (cached) keys, least recently used first. */
  keys(): string[] {
    return [...this.entries.keys()];
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  stats(): AdapterCacheStats {
    const c = this.counters;
    let leasedCount = 0;
    for (const e of this.entries.values()) if (e.leases > 0) leasedCount += 1;
    return {
      hits: c.hits, misses: c.misses, coalesced: c.coalesced, loads: c.loads, loadFailures: c.loadFailures,
      evictions: c.evictions, invalidations: c.invalidations, disposeFailures: c.disposeFailures,
      residentBytes: c.residentBytes, residentCount: c.residentCount, leasedCount,
      pinnedKeys: this.pinned.size, loading: this.flights.size, budgetBytes: this.options.budgetBytes,
      loadLatencyMs: this.latency.summary(),
    };
  }

  /**
   * Stop serving: loads in flight are aborted and their waiters rejected ('unavailable'); unleased
   * values are disposed now, leased ones at their last release.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const flight of this.flights.values()) {
      flight.controller.abort(new AppError('unavailable', 'adapter cache closed'));
      this.settleWaiters(flight, (w) => w.reject(new AppError('unavailable', 'adapter cache closed')));
    }
    for (const entry of [...this.entries.values()]) this.uncache(entry, false);
  }

  private startLoad(key: string, context: C | undefined): Flight<T> {
    const flight: Flight<T> = { controller: new AbortController(), waiters: [], invalidated: false };
    this.flights.set(key, flight);
    this.counters.loads += 1;
    const started = this.now();
    Promise.resolve()
      .then(() => this.options.load(key, flight.controller.signal, context))
      .then(
        (loaded) => this.onLoaded(key, flight, loaded, this.now() - started),
        (err: unknown) => this.onLoadFailed(key, flight, err, this.now() - started),
      );
    return flight;
  }

  private onLoaded(key: string, flight: Flight<T>, loaded: Loaded<T>, ms: number): void {
    this.flights.delete(key);
    if (!(Number.isFinite(loaded?.bytes) && loaded.bytes >= 0)) {
      this.safeDispose(loaded?.value);
      this.onLoadFailed(key, flight, new AppError('internal', `adapter loader returned an invalid size for '${key}'`), ms);
      return;
    }
    this.latency.record(ms);
    this.options.onLoad?.({ key, ms, ok: true, bytes: loaded.bytes });
    const entry: Entry<T> = { key, value: loaded.value, bytes: loaded.bytes, leases: 0, cached: false, disposed: false };
    this.counters.residentBytes += entry.bytes;
    this.counters.residentCount += 1;
    if (this.closed) {
      this.dropIfUnused(entry);
      return;
    }
    // Leases are granted before any eviction runs, so a fresh value cannot be evicted under its waiters.
    this.settleWaiters(flight, (w) => w.resolve(this.lease(entry)));
    if (!flight.invalidated && (entry.leases > 0 || entry.bytes <= this.options.budgetBytes || this.pinned.has(key))) {
      entry.cached = true;
      this.entries.set(key, entry);
      if (entry.bytes <= this.options.budgetBytes) this.accountedBytes += entry.bytes;
      this.enforceBudget();
    } else {
      this.dropIfUnused(entry);
    }
  }

  private onLoadFailed(key: string, flight: Flight<T>, err: unknown, ms: number): void {
    this.flights.delete(key);
    this.counters.loadFailures += 1;
    this.options.onLoad?.({ key, ms, ok: false });
    const error = err instanceof Error ? err : new AppError('internal', `adapter load failed for '${key}'`, { cause: err });
    // Not cached: the next acquire starts a fresh load.
    this.settleWaiters(flight, (w) => w.reject(error));
  }

  private settleWaiters(flight: Flight<T>, settle: (w: Waiter<T>) => void): void {
    for (const w of flight.waiters.splice(0)) {
      if (w.done) continue;
      w.done = true;
      settle(w);
    }
  }

  private lease(entry: Entry<T>): Lease<T> {
    entry.leases += 1;
    let released = false;
    return {
      key: entry.key,
      value: entry.value,
      release: () => {
        if (released) return;
        released = true;
        entry.leases -= 1;
        if (entry.leases > 0) return;
        if (!entry.cached) this.dropIfUnused(entry);
        else if (entry.bytes > this.options.budgetBytes && !this.pinned.has(entry.key)) this.uncache(entry, true);
        else {
          this.touch(entry);
          this.enforceBudget();
        }
      },
    };
  }

  private touch(entry: Entry<T>): void {
    this.entries.delete(entry.key);
    this.entries.set(entry.key, entry);
  }

  private enforceBudget(): void {
    if (this.accountedBytes <= this.options.budgetBytes) return;
    // Deleting the visited entry while iterating a Map is safe; LRU-first is the insertion order.
    for (const entry of this.entries.values()) {
      if (this.accountedBytes <= this.options.budgetBytes) return;
      if (entry.leases > 0 || this.pinned.has(entry.key) || entry.bytes > this.options.budgetBytes) continue;
      this.uncache(entry, true);
    }
  }

  private uncache(entry: Entry<T>, eviction: boolean): void {
    if (!entry.cached) return;
    entry.cached = false;
    this.entries.delete(entry.key);
    if (entry.bytes <= this.options.budgetBytes) this.accountedBytes -= entry.bytes;
    if (eviction) this.counters.evictions += 1;
    this.dropIfUnused(entry);
  }

  private dropIfUnused(entry: Entry<T>): void {
    if (entry.leases > 0 || entry.disposed || entry.cached) return;
    entry.disposed = true;
    this.counters.residentBytes -= entry.bytes;
    this.counters.residentCount -= 1;
    this.safeDispose(entry.value);
  }

  private safeDispose(value: T | undefined): void {
    if (value === undefined) return;
    try {
      this.options.dispose(value);
    } catch {
      // A failing dispose must not wedge the cache; it is counted so it shows up in metrics.
      this.counters.disposeFailures += 1;
    }
  }
}
