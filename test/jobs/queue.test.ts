import { randomUUID } from 'node:crypto';
import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tenantsRepo from '../../src/db/repos/tenants.js';
import { jobs } from '../../src/db/schema.js';
import { AppError } from '../../src/errors.js';
import { JobQueue, isTerminal, jobErrorOf } from '../../src/jobs/queue.js';
import { dbTargets, openTestDb, type TestDb } from '../helpers/db.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (err instanceof AppError) return err.code;
    throw err;
  }
  throw new Error('expected a rejection');
}

describe.each(dbTargets())('job queue on %s', (kind) => {
  let t: TestDb;
  let tenantId: string;
  let otherTenant: string;
  beforeAll(async () => {
    t = await openTestDb(kind);
    tenantId = (await tenantsRepo.create(t.db, { name: 'jobs-a' })).id;
    otherTenant = (await tenantsRepo.create(t.db, { name: 'jobs-b' })).id;
  });
  afterAll(async () => {
    await t?.close();
  });

  /** Each test uses its own job kind, so tests in one file never claim each other's jobs. */
  const uniqueKind = () => `k-${randomUUID().slice(0, 8)}`;
  const queue = (opts: Partial<ConstructorParameters<typeof JobQueue>[1]> = {}) =>
    new JobQueue(t.db, { leaseMs: 30_000, maxAttempts: 3, backoff: { baseMs: 0, maxMs: 0 }, ...opts });

  it('claims by priority then age, counts the attempt, and hands each job out once', async () => {
    const q = queue();
    const k = uniqueKind();
    const low = await q.enqueue({ kind: k, tenantId, payload: { n: 1 } });
    const high = await q.enqueue({ kind: k, tenantId, payload: { n: 2 }, priority: 5 });
    const later = await q.enqueue({ kind: k, tenantId, delayMs: 60_000 });
    expect(low.status).toBe('queued');
    expect(low.payload).toEqual({ n: 1 });

    const first = await q.claim('w1', [k]);
    expect(first?.id).toBe(high.id);
    expect(first?.status).toBe('running');
    expect(first?.attempts).toBe(1);
    expect(first?.leaseOwner).toBe('w1');
    expect(first!.leaseExpiresAt!.getTime() - first!.updatedAt.getTime()).toBeGreaterThan(29_000);
    expect((await q.claim('w2', [k]))?.id).toBe(low.id);
    expect(await q.claim('w3', [k])).toBeUndefined(); // `later` is not due yet
    expect((await q.get(later.id, tenantId)).status).toBe('queued');
    expect(await q.claim('w3', ['some-other-kind'])).toBeUndefined();

    const done = await q.complete(high.id, 'w1', { accuracy: 0.9 });
    expect(done?.status).toBe('succeeded');
    expect(done?.result).toEqual({ accuracy: 0.9 });
    expect(done?.finishedAt).toBeInstanceOf(Date);
    expect(done?.leaseOwner).toBeNull();
    expect(await q.complete(high.id, 'w1', {})).toBeUndefined(); // already done: no second completion
    expect(await q.complete(low.id, 'w-not-owner', {})).toBeUndefined();
  });

  it('parallel claimers never get the same job', async () => {
    const q = queue();
    const k = uniqueKind();
    const M = 40;
    for (let i = 0; i < M; i++) await q.enqueue({ kind: k, tenantId });
    const claimed: string[] = [];
    await Promise.all(
      Array.from({ length: 6 }, async (_, w) => {
        for (;;) {
          const job = await q.claim(`w${w}`, [k]);
          if (job === undefined) return;
          claimed.push(job.id);
        }
      }),
    );
    expect(claimed).toHaveLength(M);
    expect(new Set(claimed).size).toBe(M);
  });

  it('an expired lease goes back to the queue and another worker picks it up', async () => {
    const q = queue({ leaseMs: 1_000 });
    const k = uniqueKind();
    const job = await q.enqueue({ kind: k, tenantId });
    await q.claim('dead-worker', [k]);
    expect(await q.recoverExpired()).toEqual([]); // lease still valid
    await sleep(1_100);
    const recovered = await q.recoverExpired();
    expect(recovered.map((j) => j.id)).toContain(job.id);
    const again = await q.claim('live-worker', [k]);
    expect(again?.id).toBe(job.id);
    expect(again?.attempts).toBe(2);
    // The tenant learns that the worker stopped, not which host it ran on.
    expect(jobErrorOf(again!.error)).toEqual({ code: 'internal', message: 'the worker running the job stopped before it finished' });
    expect(again?.error).not.toContain('dead-worker');
    // The dead worker comes back: it holds nothing any more.
    expect(await q.heartbeat(job.id, 'dead-worker')).toEqual({ held: false, cancelRequested: false });
    expect(await q.complete(job.id, 'dead-worker', {})).toBeUndefined();
    expect((await q.complete(job.id, 'live-worker', { ok: 1 }))?.status).toBe('succeeded');
  });

  it('an expired lease on the last attempt fails the job', async () => {
    const q = queue({ leaseMs: 200 });
    const k = uniqueKind();
    const job = await q.enqueue({ kind: k, tenantId, maxAttempts: 1 });
    await q.claim('dead', [k]);
    await sleep(300);
    await q.recoverExpired();
    const after = await q.get(job.id, tenantId);
    expect(after.status).toBe('failed');
    expect(jobErrorOf(after.error)?.message).toMatch(/worker .* stopped/);
  });

  it('retries with exponential backoff until max_attempts, then fails', async () => {
    const q = queue({ backoff: { baseMs: 800, maxMs: 1_000 } });
    const k = uniqueKind();
    const job = await q.enqueue({ kind: k, tenantId, maxAttempts: 3 });
    const delays: number[] = [];
    for (let attempt = 1; attempt <= 3; attempt++) {
      let claimed = await q.claim('w', [k]);
      for (let i = 0; claimed === undefined && i < 100; i++) {
        await sleep(50);
        claimed = await q.claim('w', [k]);
      }
      expect(claimed?.attempts).toBe(attempt);
      const after = await q.fail(job.id, 'w', { code: 'internal', message: `boom ${attempt}` });
      if (attempt < 3) {
        expect(after?.status).toBe('queued');
        delays.push(after!.runAfter.getTime() - after!.updatedAt.getTime());
        expect(await q.claim('w', [k])).toBeUndefined(); // not before the backoff
      } else {
        expect(after?.status).toBe('failed');
        expect(after?.error).toBe('internal: boom 3');
        expect(after?.finishedAt).toBeInstanceOf(Date);
      }
    }
    // base · 2^(attempt-1), capped: 800, then min(1600, 1000). Both times come from one now().
    expect(delays).toEqual([800, 1_000]);
  });

  it('a non-retryable failure ends the job at once', async () => {
    const q = queue();
    const k = uniqueKind();
    const job = await q.enqueue({ kind: k, tenantId, maxAttempts: 5 });
    await q.claim('w', [k]);
    const after = await q.fail(job.id, 'w', { code: 'invalid_dataset', message: 'no images' }, 'permanent');
    expect(after?.status).toBe('failed');
    expect(after?.attempts).toBe(1);
    expect(jobErrorOf(after!.error)).toEqual({ code: 'invalid_dataset', message: 'no images' });
  });

  /** Claim the job (waiting out its backoff), as a worker would. */
  const claimSoon = async (q: JobQueue, k: string) => {
    for (let i = 0; i < 200; i++) {
      const claimed = await q.claim('w', [k]);
      if (claimed !== undefined) return claimed;
      await sleep(20);
    }
    throw new Error('nothing to claim');
  };
  const storageDown = { code: 'storage_error', message: 'the storage backend is temporarily unavailable; retry later' } as const;

  it('transient failures are retried with their own growing backoff and use up no attempt', async () => {
    const q = queue({ transientBackoff: { baseMs: 40, maxMs: 100, budgetMs: 60_000 } });
    const k = uniqueKind();
    const job = await q.enqueue({ kind: k, tenantId, maxAttempts: 2 });
    const delays: number[] = [];
    for (let i = 0; i < 5; i++) {
      const claimed = await claimSoon(q, k);
      expect(claimed.attempts).toBe(1);
      const after = await q.fail(job.id, 'w', storageDown, 'transient');
      expect([after?.status, after?.attempts]).toEqual(['queued', 0]);
      delays.push(after!.runAfter.getTime() - after!.updatedAt.getTime());
    }
    expect(delays).toEqual([40, 80, 100, 100, 100]);
    await claimSoon(q, k);
    expect((await q.complete(job.id, 'w', { ok: true }))?.status).toBe('succeeded');
    const events = (await q.listEvents(job.id, tenantId)).filter((e) => (e.data as { transient?: boolean }).transient);
    expect(events).toHaveLength(5);
    expect(events[0].data).toMatchObject({ status: 'queued', error: storageDown, retryInMs: 40 });
  });

  it('past the transient budget a transient failure counts as an attempt, so a store that stays down still ends the job', async () => {
    const q = queue({ transientBackoff: { baseMs: 0, maxMs: 0, budgetMs: 300 } });
    const k = uniqueKind();
    const job = await q.enqueue({ kind: k, tenantId, maxAttempts: 2 });
    await claimSoon(q, k);
    expect((await q.fail(job.id, 'w', storageDown, 'transient'))?.attempts).toBe(0);
    await sleep(400);
    const statuses: string[] = [];
    for (let claims = 0; claims < 5; claims++) {
      await claimSoon(q, k);
      const after = await q.fail(job.id, 'w', storageDown, 'transient');
      statuses.push(after!.status);
      if (after!.status === 'failed') break;
    }
    expect(statuses).toEqual(['queued', 'failed']);
    expect(jobErrorOf((await q.get(job.id, tenantId)).error)).toEqual(storageDown);
  });

  it("a stored error is read back tenant-safe: 5xx codes get their fixed message, unknown text becomes 'internal'", () => {
    expect(jobErrorOf(null)).toBeNull();
    expect(jobErrorOf('invalid_dataset: no images in class "cat"')).toEqual({ code: 'invalid_dataset', message: 'no images in class "cat"' });
    expect(jobErrorOf("storage_error: S3 put 'tenants/t/a.bin' in bucket 'prod' failed: connect ECONNREFUSED 10.0.0.7:9000")).toEqual(storageDown);
    expect(jobErrorOf('lease of host-7/123/abcd expired')).toEqual({ code: 'internal', message: 'internal error' });
  });

  it('cancel: a queued job ends at once and is never claimed; a running one is flagged for its worker', async () => {
    const q = queue();
    const k = uniqueKind();
    const queued = await q.enqueue({ kind: k, tenantId });
    expect(await codeOf(q.cancel(queued.id, otherTenant))).toBe('not_found');
    const cancelled = await q.cancel(queued.id, tenantId);
    expect(cancelled.status).toBe('cancelled');
    expect((await q.cancel(queued.id, tenantId)).status).toBe('cancelled'); // idempotent
    expect(await q.claim('w', [k])).toBeUndefined();

    const running = await q.enqueue({ kind: k, tenantId });
    await q.claim('w', [k]);
    expect(await q.heartbeat(running.id, 'w')).toEqual({ held: true, cancelRequested: false });
    const flagged = await q.cancel(running.id, tenantId);
    expect(flagged.status).toBe('running');
    expect(flagged.cancelRequested).toBe(true);
    expect(await q.heartbeat(running.id, 'w')).toEqual({ held: true, cancelRequested: true });
    expect((await q.markCancelled(running.id, 'w'))?.status).toBe('cancelled');

    const finished = await q.enqueue({ kind: k, tenantId });
    await q.claim('w', [k]);
    await q.complete(finished.id, 'w', null);
    expect(await codeOf(q.cancel(finished.id, tenantId))).toBe('invalid_state');
  });

  it('release gives a job back without charging the attempt', async () => {
    const q = queue();
    const k = uniqueKind();
    const job = await q.enqueue({ kind: k, tenantId });
    await q.claim('w', [k]);
    const released = await q.release(job.id, 'w');
    expect(released?.status).toBe('queued');
    expect(released?.attempts).toBe(0);
    expect((await q.claim('w2', [k]))?.id).toBe(job.id);
  });

  it('events are readable in order, after a cursor, and only by the owning tenant', async () => {
    const q = queue();
    const k = uniqueKind();
    const job = await q.enqueue({ kind: k, tenantId });
    await q.claim('w', [k]);
    expect(await q.progress(job.id, 'w', { epoch: 1 })).toBe(true);
    await q.appendEvent(job, 'log', { line: 'hello' });
    expect(await q.progress(job.id, 'w', { epoch: 2 })).toBe(true);
    await q.complete(job.id, 'w', { done: true });
    expect(await q.progress(job.id, 'w', { epoch: 3 })).toBe(false); // no lease any more

    const events = await q.listEvents(job.id, tenantId);
    expect(events.map((e) => [e.type, e.data])).toEqual([
      ['status', { status: 'queued', attempt: 0 }],
      ['status', { status: 'running', attempt: 1, owner: 'w' }],
      ['progress', { epoch: 1 }],
      ['log', { line: 'hello' }],
      ['progress', { epoch: 2 }],
      ['status', { status: 'succeeded', attempt: 1 }],
    ]);
    const ids = events.map((e) => e.id);
    expect([...ids].sort((a, b) => a - b)).toEqual(ids);
    expect((await q.listEvents(job.id, tenantId, ids[2])).map((e) => e.type)).toEqual(['log', 'progress', 'status']);
    expect(await q.listEvents(job.id, otherTenant)).toEqual([]);
    expect((await q.get(job.id, tenantId)).progress).toEqual({ epoch: 2 });
  });

  it('scopes reads by tenant; system jobs (no tenant) are their own scope', async () => {
    const q = queue();
    const k = uniqueKind();
    const mine = await q.enqueue({ kind: k, tenantId });
    const system = await q.enqueue({ kind: k });
    expect(await codeOf(q.get(mine.id, otherTenant))).toBe('not_found');
    expect(await codeOf(q.get(mine.id, null))).toBe('not_found');
    expect((await q.get(system.id, null)).tenantId).toBeNull();
    expect(await codeOf(q.get(system.id, tenantId))).toBe('not_found');
    expect((await q.list(tenantId, { kind: k })).map((j) => j.id)).toEqual([mine.id]);
    expect(await q.list(otherTenant, { kind: k })).toEqual([]);
    expect(await codeOf(q.enqueue({ kind: k, tenantId: randomUUID() }))).toBe('not_found');
    expect(isTerminal('cancelled') && !isTerminal('running')).toBe(true);
  });

  it('uses the database clock for leases', async () => {
    const q = queue({ leaseMs: 5_000 });
    const k = uniqueKind();
    const job = await q.enqueue({ kind: k, tenantId });
    await q.claim('w', [k]);
    const [row] = await t.db
      .select({ left: sql<number>`extract(epoch from (${jobs.leaseExpiresAt} - now())) * 1000` })
      .from(jobs)
      .where(eq(jobs.id, job.id));
    expect(Number(row.left)).toBeGreaterThan(4_000);
    expect(Number(row.left)).toBeLessThanOrEqual(5_000);
  });
});
