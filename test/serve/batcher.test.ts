import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AppError, isAppError } from '../../src/errors.js';
import { loadConfig } from '../../src/config.js';
import { Batcher, batcherLimitsFromConfig, type BatcherOptions } from '../../src/serve/batcher.js';
import type { BatchEntry, ItemOutcome, ServeRequest } from '../../src/serve/types.js';

type Req = ServeRequest<string>;

/** A manual clock: timers fire only when the test advances time. */
class FakeClock {
  t = 0;
  private timers = new Map<number, { at: number; fn: () => void }>();
  private nextId = 1;
  now = () => this.t;
  setTimer = (fn: () => void, ms: number) => {
    const id = this.nextId++;
    this.timers.set(id, { at: this.t + ms, fn });
    return id;
  };
  clearTimer = (h: unknown) => {
    this.timers.delete(h as number);
  };
  get pending() {
    return this.timers.size;
  }
  async advance(ms: number) {
    const end = this.t + ms;
    for (;;) {
      await flush();
      const due = [...this.timers.entries()].filter(([, x]) => x.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
      if (due === undefined) break;
      this.timers.delete(due[0]);
      this.t = Math.max(this.t, due[1].at);
      due[1].fn();
    }
    this.t = end;
    await flush();
  }
}

const flush = async () => {
  for (let i = 0; i < 5; i++) await new Promise<void>((r) => setImmediate(r));
};

const request = (tenantId: string, payloads: string[], deadline = 1e12, adapterKeys = ['v1']): Req => ({
  tenantId,
  deadline,
  items: payloads.map((payload) => ({ payload, adapterKeys })),
});

/** Executor that answers each request with its payloads joined, and records what it saw. */
function echoExecutor(opts: { delay?: () => Promise<void>; failIf?: (e: BatchEntry<Req>) => boolean } = {}) {
  const batches: BatchEntry<Req>[][] = [];
  let concurrent = 0;
  let maxConcurrent = 0;
  const execute = async (batch: readonly BatchEntry<Req>[]): Promise<ItemOutcome<string>[]> => {
    concurrent += 1;
    maxConcurrent = Math.max(maxConcurrent, concurrent);
    batches.push([...batch]);
    try {
      await (opts.delay ?? flush)();
      if (batch.some((e) => opts.failIf?.(e) ?? false)) throw new AppError('internal', 'poisoned batch');
      return batch.map((e) => ({ ok: true, value: `${e.tenantId}:${e.request.items.map((i) => i.payload).join('+')}` }));
    } finally {
      concurrent -= 1;
    }
  };
  return { execute, batches, maxConcurrent: () => maxConcurrent };
}

function make(clock: FakeClock, execute: BatcherOptions<Req, string>['execute'], over: Partial<BatcherOptions<Req, string>> = {}) {
  return new Batcher<Req, string>({
    maxBatchSize: 4,
    maxWaitMs: 5,
    queueMaxTotal: 100,
    queueMaxPerTenant: 50,
    execute,
    now: clock.now,
    setTimer: clock.setTimer,
    clearTimer: clock.clearTimer,
    ...over,
  });
}

describe('Batcher', () => {
  it('lets pending I/O run between back-to-back batches (a full queue does not starve health probes)', async () => {
    const clock = new FakeClock();
    const order: string[] = [];
    // A synchronous executor, as model compute is: nothing in it yields to the event loop.
    const execute = async (batch: readonly BatchEntry<Req>[]): Promise<ItemOutcome<string>[]> => {
      order.push('batch');
      return batch.map(() => ({ ok: true as const, value: 'ok' }));
    };
    const b = make(clock, execute);
    // Five full batches queued at once: they would run as one microtask chain.
    const all = Array.from({ length: 20 }, (_, i) => b.submit(request(`t${i % 3}`, ['x'])));
    setImmediate(() => order.push('io'));
    await Promise.all(all);
    expect(order.filter((x) => x === 'batch')).toHaveLength(5);
    // The I/O callback got its turn before the queue drained, not after every batch.
    expect(order.indexOf('io')).toBeGreaterThan(0);
    expect(order.indexOf('io')).toBeLessThan(order.length - 1);
  });

  it('waits up to maxWaitMs for a batch to fill, then runs it and routes results back', async () => {
    const clock = new FakeClock();
    const ex = echoExecutor();
    const b = make(clock, ex.execute);
    const p1 = b.submit(request('a', ['x']));
    const p2 = b.submit(request('b', ['y', 'z']));
    await clock.advance(4);
    expect(ex.batches).toHaveLength(0);
    await clock.advance(1);
    expect(await Promise.all([p1, p2])).toEqual(['a:x', 'b:y+z']);
    expect(ex.batches).toHaveLength(1);
    expect(ex.batches[0].map((e) => e.startedAt - e.enqueuedAt)).toEqual([5, 5]);
    expect(b.stats()).toMatchObject({ batchesRun: 1, completed: 2, lastBatchSizes: [3], batchSizeHistogram: { 3: 1 }, queueDepth: 0 });
  });

  it('runs at once when a batch is full, counting images not requests, one batch at a time', async () => {
    const clock = new FakeClock();
    const ex = echoExecutor();
    const b = make(clock, ex.execute);
    const all = [b.submit(request('a', ['1', '2'])), b.submit(request('b', ['3', '4'])), b.submit(request('c', ['5']))];
    await flush();
    expect(ex.batches.map((x) => x.map((e) => e.tenantId))).toEqual([['a', 'b']]);
    await clock.advance(5);
    expect(await Promise.all(all)).toEqual(['a:1+2', 'b:3+4', 'c:5']);
    expect(ex.maxConcurrent()).toBe(1);
    expect(b.stats().lastBatchSizes).toEqual([4, 1]);
  });

  it('rejects an overload burst with typed queue_full errors and completes every accepted request', async () => {
    const clock = new FakeClock();
    const ex = echoExecutor();
    const b = make(clock, ex.execute, { queueMaxTotal: 20, queueMaxPerTenant: 8, maxBatchSize: 3, maxWaitMs: 0 });
    const submitted: { t: string; i: number; p: Promise<string> }[] = [];
    for (let i = 0; i < 20; i++) for (const t of ['t0', 't1', 't2', 't3', 't4']) submitted.push({ t, i, p: b.submit(request(t, [`${t}-${i}`])) });
    const settled = await Promise.allSettled(submitted.map((s) => s.p));
    const rejected = settled.filter((s) => s.status === 'rejected').map((s) => (s as PromiseRejectedResult).reason);
    const fulfilled = settled.filter((s) => s.status === 'fulfilled');
    // The burst arrives in one tick: 20 fit (the global cap), the remaining 80 are turned away.
    expect(fulfilled).toHaveLength(20);
    expect(rejected).toHaveLength(80);
    for (const r of rejected) {
      expect(isAppError(r) && r.code === 'queue_full' && r.status === 429 && r.retryAfterSeconds! >= 1).toBe(true);
    }
    // Each accepted request got its own answer, and each tenant's were answered in order.
    settled.forEach((s, i) => {
      if (s.status === 'fulfilled') expect(s.value).toBe(`${submitted[i].t}:${submitted[i].t}-${submitted[i].i}`);
    });
    const seen = ex.batches.flat().map((e) => e.request.items[0].payload);
    expect(new Set(seen).size).toBe(20);
    expect(b.stats()).toMatchObject({ completed: 20, rejections: { queue_full: 80 }, queueDepth: 0 });
    expect(Math.max(...b.stats().lastBatchSizes)).toBeLessThanOrEqual(3);
  });

  it('applies the per-tenant cap so one tenant cannot fill the queue', async () => {
    const clock = new FakeClock();
    const b = make(clock, echoExecutor().execute, { queueMaxPerTenant: 3, maxBatchSize: 10, maxWaitMs: 1000 });
    const greedy = Array.from({ length: 5 }, (_, i) => b.submit(request('greedy', [`${i}`])));
    const turnedAway = Promise.allSettled(greedy.slice(3));
    const polite = b.submit(request('polite', ['p']));
    await flush();
    expect(b.stats().queueDepthByTenant).toEqual({ greedy: 3, polite: 1 });
    for (const r of await turnedAway) expect(r).toMatchObject({ status: 'rejected', reason: { code: 'queue_full', details: { scope: 'tenant' } } });
    await clock.advance(1000);
    expect(await polite).toBe('polite:p');
    expect(await Promise.all(greedy.slice(0, 3))).toEqual(['greedy:0', 'greedy:1', 'greedy:2']);
  });

  it('fails only the batch whose executor throws, and keeps serving', async () => {
    const clock = new FakeClock();
    const ex = echoExecutor({ failIf: (e) => e.request.items.some((i) => i.payload === 'poison') });
    const b = make(clock, ex.execute, { maxBatchSize: 2, maxWaitMs: 0 });
    const first = [b.submit(request('a', ['poison'])), b.submit(request('b', ['ok1']))];
    const second = [b.submit(request('c', ['ok2'])), b.submit(request('d', ['ok3']))];
    const r1 = await Promise.allSettled(first);
    expect(r1.map((r) => (r.status === 'rejected' ? (r.reason as AppError).message : r.value))).toEqual(['poisoned batch', 'poisoned batch']);
    expect(await Promise.all(second)).toEqual(['c:ok2', 'd:ok3']);
    expect(await b.submit(request('a', ['again']))).toBe('a:again');
    expect(b.stats()).toMatchObject({ batchFailures: 1, failed: 2, completed: 3, batchesRun: 3 });
  });

  it('passes per-request outcomes through, and turns a malformed executor answer into internal errors', async () => {
    const clock = new FakeClock();
    let mode: 'mixed' | 'short' | 'sync-throw' = 'mixed';
    const b = make(
      clock,
      (batch) => {
        if (mode === 'sync-throw') throw new Error('sync boom');
        if (mode === 'short') return Promise.resolve([]);
        return Promise.resolve(
          batch.map((e): ItemOutcome<string> =>
            e.tenantId === 'bad' ? { ok: false, error: new AppError('not_found', 'adapter gone') } : { ok: true, value: 'fine' },
          ),
        );
      },
      { maxWaitMs: 0 },
    );
    const mixed = await Promise.allSettled([b.submit(request('bad', ['1'])), b.submit(request('good', ['2']))]);
    expect(mixed[0]).toMatchObject({ status: 'rejected', reason: { code: 'not_found' } });
    expect(mixed[1]).toMatchObject({ status: 'fulfilled', value: 'fine' });
    mode = 'short';
    await expect(b.submit(request('x', ['1']))).rejects.toMatchObject({ code: 'internal' });
    mode = 'sync-throw';
    await expect(b.submit(request('x', ['1']))).rejects.toThrow('sync boom');
    mode = 'mixed';
    await expect(b.submit(request('x', ['1']))).resolves.toBe('fine');
  });

  it('fails requests whose deadline passes in the queue with deadline_exceeded', async () => {
    const clock = new FakeClock();
    let release!: () => void;
    const ex = echoExecutor({ delay: () => new Promise<void>((r) => (release = r)) });
    const b = make(clock, ex.execute, { maxBatchSize: 1, maxWaitMs: 0 });
    const running = b.submit(request('a', ['slow']));
    await flush();
    const late = b.submit(request('b', ['late'], 50));
    const lateChecked = expect(late).rejects.toMatchObject({ code: 'deadline_exceeded', status: 503 });
    const fine = b.submit(request('c', ['fine'], 1e12));
    await clock.advance(100); // the executor is still busy past b's deadline
    release();
    expect(await running).toBe('a:slow');
    await lateChecked;
    await flush();
    release();
    expect(await fine).toBe('c:fine');
    expect(ex.batches.flat().map((e) => e.tenantId)).toEqual(['a', 'c']);
    expect(b.stats().rejections).toEqual({ deadline_exceeded: 1 });
    await expect(b.submit(request('d', ['x'], 50))).rejects.toMatchObject({ code: 'deadline_exceeded' });
  });

  it('wakes for a deadline that comes before the batch wait ends', async () => {
    const clock = new FakeClock();
    const b = make(clock, echoExecutor().execute, { maxWaitMs: 1000 });
    const p = b.submit(request('a', ['x'], 10));
    const checked = expect(p).rejects.toMatchObject({ code: 'deadline_exceeded' });
    await clock.advance(9);
    expect(b.stats().queueDepth).toBe(1);
    await clock.advance(1);
    await checked;
    expect(clock.pending).toBe(0);
  });

  it('drain refuses new work, flushes the queue without waiting, and resolves when all is done', async () => {
    const clock = new FakeClock();
    let release!: () => void;
    const ex = echoExecutor({ delay: () => new Promise<void>((r) => (release = r)) });
    const b = make(clock, ex.execute, { maxBatchSize: 2, maxWaitMs: 60_000 });
    const queued = [b.submit(request('a', ['1'])), b.submit(request('b', ['2'])), b.submit(request('c', ['3']))];
    await flush(); // first batch (full) is running; c waits for more
    let drained = false;
    const d = b.drain().then(() => (drained = true));
    await expect(b.submit(request('z', ['late']))).rejects.toMatchObject({ code: 'unavailable', status: 503 });
    release();
    await flush();
    expect(drained).toBe(false); // c is now running, without waiting 60 s for a full batch
    expect(ex.batches).toHaveLength(2);
    release();
    await d;
    expect(drained).toBe(true);
    expect(await Promise.all(queued)).toEqual(['a:1', 'b:2', 'c:3']);
    expect(b.stats()).toMatchObject({ draining: true, queueDepth: 0, inFlight: 0, rejections: { unavailable: 1 } });
    await b.drain(); // idempotent on an idle batcher
  });

  it('rejects malformed requests with validation_failed', async () => {
    const b = make(new FakeClock(), echoExecutor().execute);
    await expect(b.submit(request('a', []))).rejects.toMatchObject({ code: 'validation_failed' });
    expect(() => make(new FakeClock(), echoExecutor().execute, { maxBatchSize: 0 })).toThrow(AppError);
  });

  it('takes its limits from the configuration', () => {
    const limits = batcherLimitsFromConfig(loadConfig({ BATCH_MAX_SIZE: '16', BATCH_MAX_WAIT_MS: '3', QUEUE_MAX_TOTAL: '99', QUEUE_MAX_PER_TENANT: '7' }));
    expect(limits).toEqual({ maxBatchSize: 16, maxWaitMs: 3, queueMaxTotal: 99, queueMaxPerTenant: 7 });
  });

  it('works with real timers by default', async () => {
    const ex = echoExecutor();
    const b = new Batcher<Req, string>({ maxBatchSize: 8, maxWaitMs: 2, queueMaxTotal: 10, queueMaxPerTenant: 10, execute: ex.execute });
    expect(await Promise.all([b.submit(request('a', ['1'], Date.now() + 5000)), b.submit(request('b', ['2'], Date.now() + 5000))])).toEqual(['a:1', 'b:2']);
    expect(b.stats().imagesPerSecond).toBeGreaterThan(0);
  });
});

describe('Batcher — property', () => {
  it('every submitted request settles exactly once; accepted ones reach the executor exactly once', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({ tenant: fc.nat(4), images: fc.integer({ min: 1, max: 3 }), poison: fc.boolean(), gap: fc.integer({ min: 0, max: 3 }) }),
          { maxLength: 60 },
        ),
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 0, max: 4 }),
        async (reqs, maxBatchSize, maxWaitMs) => {
          const clock = new FakeClock();
          const ex = echoExecutor({ failIf: (e) => e.request.items[0].payload.endsWith('!') });
          const b = make(clock, ex.execute, { maxBatchSize, maxWaitMs, queueMaxTotal: 12, queueMaxPerTenant: 5 });
          const outcomes = new Map<number, string>();
          const ps: Promise<void>[] = [];
          for (const [i, r] of reqs.entries()) {
            const payloads = Array.from({ length: r.images }, (_, k) => `${i}.${k}${r.poison ? '!' : ''}`);
            const p = b.submit(request(`t${r.tenant}`, payloads));
            ps.push(
              p.then(
                (v) => {
                  expect(outcomes.has(i)).toBe(false);
                  outcomes.set(i, 'ok');
                  expect(v).toBe(`t${r.tenant}:${payloads.join('+')}`);
                },
                (e: AppError) => {
                  expect(outcomes.has(i)).toBe(false);
                  outcomes.set(i, e.code);
                },
              ),
            );
            if (r.gap > 0) await clock.advance(r.gap);
          }
          await b.drain();
          await Promise.all(ps);
          expect(outcomes.size).toBe(reqs.length);
          const executed = ex.batches.flat().map((e) => e.request.items[0].payload.split('.')[0]);
          expect(new Set(executed).size).toBe(executed.length);
          const accepted = [...outcomes].filter(([, o]) => o !== 'queue_full').map(([i]) => `${i}`);
          expect(executed.sort()).toEqual(accepted.sort());
          expect(ex.maxConcurrent()).toBeLessThanOrEqual(1);
          const st = b.stats();
          expect(st.completed + st.failed).toBe(accepted.length);
          expect(st.rejections.queue_full ?? 0).toBe(reqs.length - accepted.length);
        },
      ),
      { numRuns: 60 },
    );
  });
  it('continuous batching over 2 executors: up to 2 batches at once, one starts at once when idle, the next fills while they run', async () => {
    const clock = new FakeClock();
    const gates: Array<() => void> = [];
    const ex = echoExecutor({ delay: () => new Promise<void>((r) => gates.push(r)) });
    const b = make(clock, ex.execute, { maxWaitMs: 0, concurrency: 2, maxBatchSize: 8 });
    const first = b.submit(request('a', ['1']));
    await flush();
    expect(ex.batches).toHaveLength(1); // no wait for company: an executor was idle
    const second = b.submit(request('b', ['2']));
    await flush();
    expect(ex.batches).toHaveLength(2); // the second executor takes the next request at once
    expect(b.stats()).toMatchObject({ running: 2, inFlight: 2 });
    const later = ['3', '4', '5'].map((p, i) => b.submit(request(`c${i}`, [p])));
    await flush();
    expect(ex.batches).toHaveLength(2); // both busy: these wait, together
    gates.shift()!();
    expect(await first).toBe('a:1');
    await flush();
    expect(ex.batches).toHaveLength(3);
    expect(ex.batches[2].map((e) => e.tenantId).sort()).toEqual(['c0', 'c1', 'c2']); // one batch of what queued meanwhile
    for (const g of gates.splice(0)) g();
    expect(await second).toBe('b:2');
    expect(await Promise.all(later)).toEqual(['c0:3', 'c1:4', 'c2:5']);
    expect(ex.maxConcurrent()).toBe(2);
    const drained = b.drain();
    await drained;
    expect(b.stats()).toMatchObject({ running: 0, inFlight: 0, completed: 5 });
  });
});
