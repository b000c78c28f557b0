import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors.js';
import { AdapterCache, type Lease, type Loaded } from '../../src/serve/adapter-cache.js';

/** A loaded value that remembers how often it was disposed. */
interface Val {
  key: string;
  gen: number;
  bytes: number;
  disposed: number;
}

interface Pending {
  key: string;
  resolve: (v: Loaded<Val>) => void;
  reject: (e: unknown) => void;
  signal: AbortSignal;
}

/**
 * An in-memory loader whose loads finish only when the test says so, so interleavings are explicit.
 * (The real blob-store loader is exercised by the engine's integration tests.)
 */
function harness(budgetBytes: number, sizes: Record<string, number> = {}, defaultSize = 100) {
  const pending: Pending[] = [];
  const values: Val[] = [];
  const gens = new Map<string, number>();
  let clock = 0;
  const cache = new AdapterCache<Val>({
    budgetBytes,
    now: () => clock,
    load: (key, signal) =>
      new Promise((resolve, reject) => {
        pending.push({ key, resolve, reject, signal });
      }),
    dispose: (v) => {
      v.disposed += 1;
    },
  });
  const finish = (key: string, opts: { fail?: unknown; ms?: number } = {}) => {
    const i = pending.findIndex((p) => p.key === key);
    if (i < 0) throw new Error(`no pending load for ${key}`);
    const [p] = pending.splice(i, 1);
    clock += opts.ms ?? 0;
    if (opts.fail !== undefined) return p.reject(opts.fail);
    const gen = (gens.get(key) ?? 0) + 1;
    gens.set(key, gen);
    const v: Val = { key, gen, bytes: sizes[key] ?? defaultSize, disposed: 0 };
    values.push(v);
    p.resolve({ value: v, bytes: v.bytes });
  };
  const tick = () => new Promise<void>((r) => setImmediate(r));
  /** Acquire and let a pending load of `key` finish. */
  const load = async (key: string): Promise<Lease<Val>> => {
    const p = cache.acquire(key);
    await tick();
    if (pending.some((x) => x.key === key)) finish(key);
    return p;
  };
  return { cache, pending, values, finish, tick, load };
}

describe('AdapterCache', () => {
  it('single-flight: N concurrent acquires of a cold key cause one load', async () => {
    const h = harness(1000);
    const all = Array.from({ length: 10 }, () => h.cache.acquire('a'));
    await h.tick();
    expect(h.pending).toHaveLength(1);
    h.finish('a', { ms: 7 });
    const leases = await Promise.all(all);
    expect(new Set(leases.map((l) => l.value)).size).toBe(1);
    expect(h.cache.stats()).toMatchObject({ loads: 1, misses: 10, coalesced: 9, hits: 0, residentCount: 1, residentBytes: 100, leasedCount: 1 });
    const again = await h.cache.acquire('a');
    expect(again.value).toBe(leases[0].value);
    expect(h.cache.stats()).toMatchObject({ hits: 1, loads: 1 });
    expect(h.cache.stats().loadLatencyMs).toMatchObject({ count: 1, sum: 7, p50: 7, p99: 7, max: 7 });
  });

  it('reports a failed load to every waiter, does not cache it, and retries on the next acquire', async () => {
    const h = harness(1000);
    const waits = [h.cache.acquire('a'), h.cache.acquire('a'), h.cache.acquire('a')];
    await h.tick();
    const boom = new AppError('storage_error', 'blob store down');
    h.finish('a', { fail: boom });
    const results = await Promise.allSettled(waits);
    expect(results.map((r) => (r.status === 'rejected' ? r.reason : 'ok'))).toEqual([boom, boom, boom]);
    expect(h.cache.has('a')).toBe(false);
    expect(h.cache.stats()).toMatchObject({ loads: 1, loadFailures: 1, residentCount: 0 });
    const lease = await h.load('a');
    expect(lease.value.gen).toBe(1);
    expect(h.cache.stats()).toMatchObject({ loads: 2, loadFailures: 1, residentCount: 1 });
  });

  it('turns odd loader failures into typed errors and disposes a value returned with a bad size', async () => {
    const throwing = new AdapterCache<number>({
      budgetBytes: 10,
      load: () => {
        throw 'not an Error';
      },
      dispose: () => {},
    });
    await expect(throwing.acquire('x')).rejects.toMatchObject({ code: 'internal' });
    const disposed: string[] = [];
    const badSize = new AdapterCache<string>({
      budgetBytes: 10,
      load: async (key) => ({ value: key, bytes: Number.NaN }),
      dispose: (v) => disposed.push(v),
    });
    await expect(badSize.acquire('y')).rejects.toMatchObject({ code: 'internal' });
    expect(disposed).toEqual(['y']);
    expect(badSize.stats()).toMatchObject({ loadFailures: 1, residentCount: 0, residentBytes: 0 });
  });

  it('evicts least-recently-used entries to stay within the byte budget', async () => {
    const h = harness(300);
    for (const k of ['a', 'b', 'c']) (await h.load(k)).release();
    (await h.cache.acquire('a')).release(); // a becomes most recent
    (await h.load('d')).release();
    expect(h.cache.keys()).toEqual(['c', 'a', 'd']);
    const b = h.values.find((v) => v.key === 'b')!;
    expect(b.disposed).toBe(1);
    expect(h.values.filter((v) => v.key !== 'b').every((v) => v.disposed === 0)).toBe(true);
    expect(h.cache.stats()).toMatchObject({ evictions: 1, residentBytes: 300, residentCount: 3 });
  });

  it('never evicts or disposes an entry while a lease is held', async () => {
    const h = harness(200);
    const a = await h.load('a');
    for (const k of ['b', 'c', 'd']) (await h.load(k)).release();
    expect(h.cache.has('a')).toBe(true);
    expect(a.value.disposed).toBe(0);
    expect(h.cache.stats().residentBytes).toBeLessThanOrEqual(200);
    a.release();
    a.release(); // idempotent
    expect(h.cache.stats().leasedCount).toBe(0);
    // Release counts as use, so a is now the most recent and survives one more load.
    (await h.load('e')).release();
    expect(h.cache.keys()).toEqual(['a', 'e']);
    (await h.load('f')).release();
    expect(h.cache.has('a')).toBe(false);
    expect(a.value.disposed).toBe(1);
  });

  it('the load context of the acquire that starts a load reaches the loader; acquires that join it share that load', async () => {
    const seen: Array<{ key: string; context: string | undefined }> = [];
    const cache = new AdapterCache<string, string>({
      budgetBytes: 1000,
      load: async (key, _signal, context) => {
        seen.push({ key, context });
        return { value: `${key}@${context}`, bytes: 1 };
      },
      dispose: () => {},
    });
    const [a, b, c] = await Promise.all([
      cache.acquire('a', { context: 'file-a' }),
      cache.acquire('a', { context: 'file-a' }),
      cache.acquire('b'),
    ]);
    expect(seen).toEqual([
      { key: 'a', context: 'file-a' },
      { key: 'b', context: undefined },
    ]);
    expect([a.value, b.value, c.value]).toEqual(['a@file-a', 'a@file-a', 'b@undefined']);
    // A hit never calls the loader, whatever context it carries.
    (await cache.acquire('a', { context: 'elsewhere' })).release();
    expect(seen).toHaveLength(2);
  });

  it('invalidate drops the entry now, disposes it after its last lease, and the next acquire reloads', async () => {
    const h = harness(1000);
    const old = await h.load('a');
    expect(h.cache.invalidate('a')).toBe(true);
    expect(h.cache.invalidate('zzz')).toBe(false);
    expect(old.value.disposed).toBe(0);
    const fresh = await h.load('a');
    expect(fresh.value.gen).toBe(2);
    expect(h.cache.stats()).toMatchObject({ residentCount: 2, residentBytes: 200, invalidations: 1 });
    old.release();
    expect(old.value.disposed).toBe(1);
    expect(fresh.value.disposed).toBe(0);
    expect(h.cache.stats()).toMatchObject({ residentCount: 1, residentBytes: 100 });
  });

  it('a load invalidated while in flight serves its waiters but is not cached', async () => {
    const h = harness(1000);
    const p = h.cache.acquire('a');
    await h.tick();
    h.cache.invalidate('a');
    h.finish('a');
    const lease = await p;
    expect(h.cache.has('a')).toBe(false);
    lease.release();
    expect(lease.value.disposed).toBe(1);
    expect(h.cache.stats()).toMatchObject({ residentCount: 0, residentBytes: 0 });
  });

  it('pinned entries survive eviction pressure until unpinned', async () => {
    const h = harness(200);
    h.cache.pin('hot');
    (await h.load('hot')).release();
    for (const k of ['b', 'c', 'd']) (await h.load(k)).release();
    expect(h.cache.has('hot')).toBe(true);
    expect(h.cache.keys()).toEqual(['hot', 'd']);
    h.cache.unpin('hot');
    expect(h.cache.has('hot')).toBe(true); // within budget: unpinning alone evicts nothing
    (await h.load('e')).release();
    expect(h.cache.keys()).toEqual(['d', 'e']);
    expect(h.cache.stats().pinnedKeys).toBe(0);
  });

  it('unpinning when over budget evicts at once', async () => {
    const h = harness(150);
    h.cache.pin('a');
    h.cache.pin('b');
    (await h.load('a')).release();
    (await h.load('b')).release();
    expect(h.cache.stats().residentBytes).toBe(200);
    h.cache.unpin('a');
    expect(h.cache.keys()).toEqual(['b']);
    expect(h.cache.stats().residentBytes).toBe(100);
  });

  it('serves an entry larger than the whole budget without evicting others, then drops it on release', async () => {
    const h = harness(250, { big: 1000 });
    for (const k of ['a', 'b']) (await h.load(k)).release();
    const big = await h.load('big');
    const big2 = await h.cache.acquire('big'); // resident while leased: a hit
    expect(big2.value).toBe(big.value);
    expect(h.cache.keys()).toEqual(['a', 'b', 'big']);
    expect(h.cache.stats()).toMatchObject({ residentBytes: 1200, hits: 1 });
    big.release();
    expect(h.cache.has('big')).toBe(true);
    big2.release();
    expect(h.cache.has('big')).toBe(false);
    expect(big.value.disposed).toBe(1);
    expect(h.cache.keys()).toEqual(['a', 'b']);
    expect(h.cache.stats()).toMatchObject({ residentBytes: 200, evictions: 1 });
  });

  it('a waiter that gives up is rejected alone; the load continues and is cached', async () => {
    const h = harness(1000);
    const ctl = new AbortController();
    const patient = h.cache.acquire('a');
    const impatient = h.cache.acquire('a', { signal: ctl.signal });
    ctl.abort();
    await expect(impatient).rejects.toMatchObject({ code: 'deadline_exceeded' });
    await h.tick();
    h.finish('a');
    const lease = await patient;
    expect(h.cache.stats()).toMatchObject({ leasedCount: 1, residentCount: 1, loads: 1 });
    lease.release();
    const reason = new AppError('unavailable', 'client went away');
    const preAborted = AbortSignal.abort(reason);
    h.cache.invalidate('a');
    await expect(h.cache.acquire('a', { signal: preAborted })).rejects.toBe(reason);
  });

  it('close rejects waiters, aborts loads, disposes unleased values now and leased ones at release', async () => {
    const h = harness(1000);
    const held = await h.load('a');
    (await h.load('b')).release();
    const waiting = h.cache.acquire('c');
    await h.tick();
    const loadSignal = h.pending[0].signal;
    h.cache.close();
    await expect(waiting).rejects.toMatchObject({ code: 'unavailable' });
    expect(loadSignal.aborted).toBe(true);
    await expect(h.cache.acquire('a')).rejects.toMatchObject({ code: 'unavailable' });
    expect(h.values.find((v) => v.key === 'b')!.disposed).toBe(1);
    expect(held.value.disposed).toBe(0);
    held.release();
    expect(held.value.disposed).toBe(1);
    h.finish('c'); // the loader ignored the abort: its value is disposed, not leaked
    await h.tick();
    expect(h.values.find((v) => v.key === 'c')!.disposed).toBe(1);
    expect(h.cache.stats()).toMatchObject({ residentCount: 0, residentBytes: 0 });
  });

  it('reports load latency percentiles over the recent window', async () => {
    const h = harness(1e9);
    for (let i = 1; i <= 100; i++) {
      const p = h.cache.acquire(`k${i}`);
      await h.tick();
      h.finish(`k${i}`, { ms: i });
      (await p).release();
    }
    expect(h.cache.stats().loadLatencyMs).toEqual({ count: 100, sum: 5050, max: 100, p50: 50, p99: 99 });
  });
});

// ---------------------------------------------------------------------------------------------
// Model-based property: random interleavings of acquire / release / finish-load / fail-load /
// invalidate / pin / unpin keep every lifetime rule.

type Op =
  | { op: 'acquire'; key: number }
  | { op: 'release'; pick: number }
  | { op: 'finish'; pick: number; fail: boolean }
  | { op: 'invalidate'; key: number }
  | { op: 'pin'; key: number }
  | { op: 'unpin'; key: number };

const opArb = (keys: number): fc.Arbitrary<Op> =>
  fc.oneof(
    { weight: 4, arbitrary: fc.record({ op: fc.constant('acquire' as const), key: fc.nat(keys - 1) }) },
    { weight: 3, arbitrary: fc.record({ op: fc.constant('release' as const), pick: fc.nat() }) },
    { weight: 3, arbitrary: fc.record({ op: fc.constant('finish' as const), pick: fc.nat(), fail: fc.boolean() }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('invalidate' as const), key: fc.nat(keys - 1) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('pin' as const), key: fc.nat(keys - 1) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('unpin' as const), key: fc.nat(keys - 1) }) },
  );

describe('AdapterCache — properties', () => {
  it('keeps lifetime, budget and single-flight rules under random interleavings', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 50, max: 400 }),
        fc.array(fc.integer({ min: 10, max: 500 }), { minLength: 8, maxLength: 8 }),
        fc.array(opArb(8), { maxLength: 80 }),
        async (keyCount, budget, sizeList, ops) => {
          const sizes = Object.fromEntries(sizeList.map((b, i) => [`k${i}`, b]));
          const h = harness(budget, sizes);
          const leases: Lease<Val>[] = [];
          const failed: Error[] = [];
          const pins = new Set<string>();
          let granted = 0;
          const track = (p: Promise<Lease<Val>>) =>
            p.then(
              (l) => {
                granted += 1;
                leases.push(l);
              },
              (e: Error) => void failed.push(e),
            );
          const inFlight: Promise<void>[] = [];
          const stale = new Set<Val>();
          const staleFlights = new Set<string>();
          const finish = (k: string, fail: boolean) => {
            const before = h.values.length;
            h.finish(k, fail ? { fail: new AppError('storage_error', 'x') } : {});
            if (staleFlights.delete(k) && h.values.length > before) stale.add(h.values[before]);
          };

          const check = () => {
            const live = h.values.filter((v) => v.disposed === 0);
            for (const v of h.values) expect(v.disposed).toBeLessThanOrEqual(1);
            for (const l of leases) expect(l.value.disposed).toBe(0); // never disposed under a lease
            const st = h.cache.stats();
            expect(st.residentCount).toBe(live.length);
            expect(st.residentBytes).toBe(live.reduce((a, v) => a + v.bytes, 0));
            // Single-flight: at most one load in flight per key.
            const loading = h.pending.map((p) => p.key);
            expect(new Set(loading).size).toBe(loading.length);
            // Budget: if the counted bytes exceed it, nothing evictable is left.
            const cached = h.cache.keys().map((k) => live.find((v) => v.key === k && v.gen === Math.max(...live.filter((x) => x.key === k).map((x) => x.gen)))!);
            const counted = cached.filter((v) => v.bytes <= budget);
            if (counted.reduce((a, v) => a + v.bytes, 0) > budget) {
              for (const v of counted) {
                const leased = leases.some((l) => l.value === v);
                expect(leased || pins.has(v.key)).toBe(true);
              }
            }
            // A leased value that was not invalidated is the cached one for its key (never evicted).
            for (const l of leases) if (!stale.has(l.value)) expect(cached).toContain(l.value);
            // Oversized entries are kept only while leased or pinned.
            for (const v of cached.filter((x) => x.bytes > budget)) {
              expect(leases.some((l) => l.value === v) || pins.has(v.key)).toBe(true);
            }
          };

          for (const o of ops) {
            const key = 'key' in o ? `k${o.key % keyCount}` : '';
            if (o.op === 'acquire') inFlight.push(track(h.cache.acquire(key)));
            else if (o.op === 'release' && leases.length > 0) leases.splice(o.pick % leases.length, 1)[0].release();
            else if (o.op === 'finish' && h.pending.length > 0) {
              finish(h.pending[o.pick % h.pending.length].key, o.fail);
            } else if (o.op === 'invalidate') {
              h.cache.invalidate(key);
              for (const v of h.values) if (v.key === key) stale.add(v);
              if (h.pending.some((p) => p.key === key)) staleFlights.add(key);
            }
            else if (o.op === 'pin') {
              h.cache.pin(key);
              pins.add(key);
            } else if (o.op === 'unpin') {
              h.cache.unpin(key);
              pins.delete(key);
            }
            await h.tick();
            check();
          }
          // Finish everything: every acquire settles, and after close + release nothing stays live.
          while (h.pending.length > 0) {
            finish(h.pending[0].key, false);
            await h.tick();
          }
          await Promise.all(inFlight);
          expect(granted + failed.length).toBe(inFlight.length);
          for (const e of failed) expect(e).toBeInstanceOf(AppError);
          check();
          h.cache.close();
          for (const l of leases.splice(0)) l.release();
          expect(h.values.every((v) => v.disposed === 1)).toBe(true);
          expect(h.cache.stats()).toMatchObject({ residentCount: 0, residentBytes: 0 });
        },
      ),
      { numRuns: 150 },
    );
  });
});
