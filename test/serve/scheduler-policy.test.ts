import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors.js';
import {
  createSchedulerState,
  enqueue,
  nextBatch,
  takeAll,
  tenantDepths,
  type SchedulerState,
} from '../../src/serve/scheduler-policy.js';
import type { Queued } from '../../src/serve/types.js';

interface Req {
  tenantId: string;
  deadline: number;
  items: unknown[];
  tag: number;
}

const limits = { maxTotal: 1000, maxPerTenant: 1000 };
const req = (tenantId: string, images = 1, deadline = 1e9, tag = 0): Req => ({
  tenantId,
  deadline,
  items: Array.from({ length: images }, () => ({})),
  tag,
});

function admit(state: SchedulerState<Req>, r: Req, now = 0): Queued<Req> {
  const a = enqueue(state, r, now, limits);
  if (!a.ok) throw a.error;
  return a.queued;
}

function batchOf(state: SchedulerState<Req>, now: number, maxBatchSize: number, maxWaitMs = 0) {
  const d = nextBatch(state, now, { maxBatchSize, maxWaitMs });
  if (d.kind !== 'batch') throw new Error(`expected a batch, got ${d.kind}`);
  return d.batch;
}

describe('scheduler policy — examples', () => {
  it('serves tenants round-robin so a deep queue does not starve a shallow one', () => {
    const s = createSchedulerState<Req>();
    for (let i = 0; i < 10; i++) admit(s, req('deep', 1, 1e9, i));
    admit(s, req('a', 1, 1e9, 100));
    admit(s, req('b', 1, 1e9, 200));
    const batch = batchOf(s, 0, 4);
    expect(batch.map((q) => q.tenantId)).toEqual(['deep', 'a', 'b', 'deep']);
    expect(batch.map((q) => q.request.tag)).toEqual([0, 100, 200, 1]);
    expect(s.total).toBe(8);
    expect(tenantDepths(s)).toEqual({ deep: 8 });
  });

  it('a newly active tenant joins the rotation last', () => {
    const s = createSchedulerState<Req>();
    for (const t of ['a', 'b', 'c']) for (let i = 0; i < 3; i++) admit(s, req(t));
    expect(batchOf(s, 0, 1)[0].tenantId).toBe('a');
    admit(s, req('z'));
    const order = [1, 2, 3, 4].map(() => batchOf(s, 0, 1)[0].tenantId);
    expect(order).toEqual(['b', 'c', 'a', 'z']);
  });

  it('counts images, not requests, and runs an oversized request alone', () => {
    const s = createSchedulerState<Req>();
    admit(s, req('a', 3));
    admit(s, req('b', 3));
    admit(s, req('c', 9));
    expect(batchOf(s, 0, 8).map((q) => q.tenantId)).toEqual(['a', 'b']);
    // c was crowded out, so it goes first next time — alone, because 9 > 8.
    const next = batchOf(s, 0, 8);
    expect(next.map((q) => q.tenantId)).toEqual(['c']);
    expect(next[0].cost).toBe(9);
    expect(nextBatch(s, 0, { maxBatchSize: 8, maxWaitMs: 0 }).kind).toBe('idle');
  });

  it('keeps per-tenant FIFO when a tenant head does not fit', () => {
    const s = createSchedulerState<Req>();
    admit(s, req('a', 2, 1e9, 1));
    admit(s, req('b', 4, 1e9, 2));
    admit(s, req('b', 1, 1e9, 3));
    const batch = batchOf(s, 0, 3);
    // b's 4-image head does not fit after a's 2; its 1-image follower must not overtake it.
    expect(batch.map((q) => q.request.tag)).toEqual([1]);
    expect(batchOf(s, 0, 3).map((q) => q.request.tag)).toEqual([2]);
  });

  it('waits for maxWaitMs unless the batch is full, and wakes early for a deadline', () => {
    const s = createSchedulerState<Req>();
    admit(s, req('a', 1, 1000), 100);
    expect(nextBatch(s, 100, { maxBatchSize: 4, maxWaitMs: 5 })).toEqual({ kind: 'wait', until: 105, expired: [] });
    admit(s, req('b', 1, 102), 101);
    expect(nextBatch(s, 101, { maxBatchSize: 4, maxWaitMs: 5 })).toMatchObject({ kind: 'wait', until: 102 });
    const d = nextBatch(s, 102, { maxBatchSize: 4, maxWaitMs: 5 });
    expect(d.kind).toBe('wait');
    expect(d.expired.map((q) => q.tenantId)).toEqual(['b']);
    expect(nextBatch(s, 103, { maxBatchSize: 4, maxWaitMs: 5, flush: true }).kind).toBe('batch');
    admit(s, req('a', 2), 200);
    admit(s, req('b', 2), 200);
    expect(nextBatch(s, 200, { maxBatchSize: 4, maxWaitMs: 5 }).kind).toBe('batch');
  });

  it('rejects overflow with typed queue_full errors carrying Retry-After', () => {
    const s = createSchedulerState<Req>();
    const opts = { maxTotal: 3, maxPerTenant: 2, retryAfterSeconds: 2.2 };
    expect(enqueue(s, req('a'), 0, opts).ok).toBe(true);
    expect(enqueue(s, req('a'), 0, opts).ok).toBe(true);
    const perTenant = enqueue(s, req('a'), 0, opts);
    expect(perTenant.ok).toBe(false);
    if (!perTenant.ok) {
      expect(perTenant.error).toBeInstanceOf(AppError);
      expect(perTenant.error.code).toBe('queue_full');
      expect(perTenant.error.retryAfterSeconds).toBe(3);
      expect(perTenant.error.details).toMatchObject({ scope: 'tenant' });
    }
    expect(enqueue(s, req('b'), 0, opts).ok).toBe(true);
    const total = enqueue(s, req('c'), 0, opts);
    expect(!total.ok && total.error.details).toMatchObject({ scope: 'total' });
    expect(s.total).toBe(3);
  });

  it('rejects malformed or already-late requests without queueing them', () => {
    const s = createSchedulerState<Req>();
    const codes = [
      enqueue(s, req('a', 0), 0, limits),
      enqueue(s, req('', 1), 0, limits),
      enqueue(s, req('a', 1, Number.NaN), 0, limits),
      enqueue(s, req('a', 1, 5), 5, limits),
      enqueue(s, req('a', 2), 0, { ...limits, costOf: () => 0 }),
    ].map((a) => (a.ok ? 'ok' : a.error.code));
    expect(codes).toEqual(['validation_failed', 'validation_failed', 'validation_failed', 'deadline_exceeded', 'validation_failed']);
    expect(s.total).toBe(0);
  });

  it('takeAll empties the state in admission order', () => {
    const s = createSchedulerState<Req>();
    admit(s, req('b'));
    admit(s, req('a'));
    admit(s, req('b'));
    expect(takeAll(s).map((q) => q.seq)).toEqual([0, 1, 2]);
    expect(s.total + s.totalCost + s.ring.length + s.queues.size).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------
// Model-based property test: random interleavings of enqueues, clock steps and batch decisions.

type Cmd =
  | { op: 'enqueue'; tenant: number; images: number; ttl: number }
  | { op: 'tick'; dt: number }
  | { op: 'decide'; flush: boolean };

const cmdArb = (tenants: number, maxImages: number): fc.Arbitrary<Cmd> =>
  fc.oneof(
    { weight: 5, arbitrary: fc.record({ op: fc.constant('enqueue' as const), tenant: fc.nat(tenants - 1), images: fc.integer({ min: 1, max: maxImages }), ttl: fc.integer({ min: 1, max: 60 }) }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('tick' as const), dt: fc.integer({ min: 0, max: 10 }) }) },
    { weight: 3, arbitrary: fc.record({ op: fc.constant('decide' as const), flush: fc.boolean() }) },
  );

const scenarioArb = fc
  .record({
    tenants: fc.integer({ min: 1, max: 7 }),
    maxImages: fc.integer({ min: 1, max: 4 }),
    maxBatchSize: fc.integer({ min: 1, max: 10 }),
    maxWaitMs: fc.integer({ min: 0, max: 8 }),
    maxTotal: fc.integer({ min: 1, max: 25 }),
    maxPerTenant: fc.integer({ min: 1, max: 10 }),
  })
  .chain((p) => fc.record({ p: fc.constant(p), cmds: fc.array(cmdArb(p.tenants, p.maxImages), { maxLength: 150 }) }));

describe('scheduler policy — properties', () => {
  it('never loses or duplicates a request, keeps FIFO, enforces caps, deadlines, readiness and fairness', () => {
    fc.assert(
      fc.property(scenarioArb, ({ p, cmds }) => {
        const s = createSchedulerState<Req>();
        const opts = { maxBatchSize: p.maxBatchSize, maxWaitMs: p.maxWaitMs };
        const accepted = new Map<number, Queued<Req>>();
        const outcome = new Map<number, 'batched' | 'expired'>();
        const model = new Map<string, Queued<Req>[]>(); // what we believe is queued, per tenant
        const lastSeq = new Map<string, number>(); // per-tenant FIFO of served requests
        const unservedBatches = new Map<string, number>();
        const rotationBound = new Map<string, number>();
        let now = 0;

        const settle = (qs: Queued<Req>[], how: 'batched' | 'expired') => {
          for (const q of qs) {
            expect(accepted.has(q.seq)).toBe(true);
            expect(outcome.has(q.seq)).toBe(false); // never twice
            outcome.set(q.seq, how);
            const m = model.get(q.tenantId)!;
            m.splice(m.indexOf(accepted.get(q.seq)!), 1);
            if (m.length === 0) {
              model.delete(q.tenantId);
              unservedBatches.delete(q.tenantId);
              rotationBound.delete(q.tenantId);
            }
          }
        };

        const checkCounts = () => {
          const live = [...model.values()].flat();
          expect(s.total).toBe(live.length);
          expect(s.totalCost).toBe(live.reduce((a, q) => a + q.cost, 0));
        };

        const decide = (flush: boolean) => {
          const before = new Map([...model].map(([t, qs]) => [t, [...qs]]));
          const d = nextBatch(s, now, { ...opts, flush });
          for (const q of d.expired) expect(q.deadline).toBeLessThanOrEqual(now);
          settle(d.expired, 'expired');
          // Everything still believed queued is live; nothing live was dropped.
          const live = [...model.values()].flat();
          for (const q of live) expect(q.deadline).toBeGreaterThan(now);
          if (d.kind === 'idle') {
            expect(live).toHaveLength(0);
            checkCounts();
            return;
          }
          expect(live.length).toBeGreaterThan(0);
          const oldest = Math.min(...live.map((q) => q.enqueuedAt));
          const cost = live.reduce((a, q) => a + q.cost, 0);
          const ready = flush || cost >= p.maxBatchSize || now >= oldest + p.maxWaitMs;
          expect(d.kind === 'batch').toBe(ready);
          if (d.kind === 'wait') {
            expect(d.until).toBeGreaterThan(now);
            expect(d.until).toBeLessThanOrEqual(oldest + p.maxWaitMs);
            checkCounts();
            return;
          }
          const batch = d.batch;
          expect(batch.length).toBeGreaterThan(0);
          const used = batch.reduce((a, q) => a + q.cost, 0);
          if (batch.length > 1) expect(used).toBeLessThanOrEqual(p.maxBatchSize);
          // FIFO: each tenant's requests leave in admission order, and only from the head.
          const byTenant = new Map<string, Queued<Req>[]>();
          for (const q of batch) byTenant.set(q.tenantId, [...(byTenant.get(q.tenantId) ?? []), q]);
          for (const [t, qs] of byTenant) {
            const queuedBefore = before.get(t)!.filter((q) => q.deadline > now);
            expect(qs.map((q) => q.seq)).toEqual(queuedBefore.slice(0, qs.length).map((q) => q.seq));
            expect(qs[0].seq).toBeGreaterThan(lastSeq.get(t) ?? -1);
            lastSeq.set(t, qs[qs.length - 1].seq);
          }
          // Fairness: a waiting tenant left out entirely was crowded out by a full batch.
          const waiting = [...model.keys()];
          for (const t of waiting) {
            if (byTenant.has(t)) continue;
            expect(used + model.get(t)![0].cost).toBeGreaterThan(p.maxBatchSize);
          }
          // With unit costs, every waiting tenant gets its round-robin share.
          if (live.every((q) => q.cost === 1)) {
            const share = Math.floor(p.maxBatchSize / waiting.length);
            for (const t of waiting) {
              const depth = model.get(t)!.length;
              expect(byTenant.get(t)?.length ?? 0).toBeGreaterThanOrEqual(Math.min(depth, share));
            }
          }
          settle(batch, 'batched');
          checkCounts();
          // Starvation bound: a waiting tenant goes unserved for fewer batches than there were active
          // tenants when it joined or was last served (each such batch moves the rotation past one).
          for (const t of waiting) {
            if (!model.has(t)) continue;
            if (byTenant.has(t)) {
              unservedBatches.set(t, 0);
              rotationBound.set(t, model.size);
              continue;
            }
            const n = (unservedBatches.get(t) ?? 0) + 1;
            unservedBatches.set(t, n);
            expect(n).toBeLessThan(rotationBound.get(t)!);
          }
        };

        for (const c of cmds) {
          if (c.op === 'tick') now += c.dt;
          else if (c.op === 'decide') decide(c.flush);
          else {
            const tenantId = `t${c.tenant}`;
            const depth = model.get(tenantId)?.length ?? 0;
            const total = [...model.values()].reduce((a, qs) => a + qs.length, 0);
            const a = enqueue(s, req(tenantId, c.images, now + c.ttl), now, { maxTotal: p.maxTotal, maxPerTenant: p.maxPerTenant });
            const shouldFit = total < p.maxTotal && depth < p.maxPerTenant;
            expect(a.ok).toBe(shouldFit);
            if (!a.ok) {
              expect(a.error.code).toBe('queue_full');
              expect(a.error.retryAfterSeconds).toBeGreaterThanOrEqual(1);
              continue;
            }
            accepted.set(a.queued.seq, a.queued);
            if (!model.has(tenantId)) {
              model.set(tenantId, []);
              rotationBound.set(tenantId, model.size);
            }
            model.get(tenantId)!.push(a.queued);
          }
        }
        // Drain: every accepted request ends batched or expired, exactly once.
        for (let guard = 0; model.size > 0; guard++) {
          expect(guard).toBeLessThan(1000);
          decide(true);
        }
        expect(outcome.size).toBe(accepted.size);
        expect(s.ring).toHaveLength(0);
      }),
      { numRuns: 300 },
    );
  });

  it('ring and cursor stay consistent with the queues', () => {
    fc.assert(
      fc.property(scenarioArb, ({ p, cmds }) => {
        const s = createSchedulerState<Req>();
        let now = 0;
        for (const c of cmds) {
          if (c.op === 'tick') now += c.dt;
          else if (c.op === 'decide') nextBatch(s, now, { maxBatchSize: p.maxBatchSize, maxWaitMs: p.maxWaitMs, flush: c.flush });
          else enqueue(s, req(`t${c.tenant}`, c.images, now + c.ttl), now, { maxTotal: p.maxTotal, maxPerTenant: p.maxPerTenant });
          expect([...s.ring].sort()).toEqual([...s.queues.keys()].sort());
          for (const q of s.queues.values()) expect(q.length).toBeGreaterThan(0);
          expect(s.cursor === 0 || s.cursor < s.ring.length).toBe(true);
        }
      }),
      { numRuns: 200 },
    );
  });
});
