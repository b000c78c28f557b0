/**
 * Read-only views of the job table: one job, a tenant's listing, the jobs that trained given
 * adapters, and jobs of one kind counted by status. Writes stay in jobs.ts (which re-exports
 * get and list).
 */
import { and, asc, count, desc, eq, inArray, isNull, sql, type SQL } from 'drizzle-orm';
import type { Db } from '../open.js';
import { jobs, type Job, type JobStatus } from '../schema.js';
import type { JobScope } from './job-events.js';
import { afterCursor, keysetOrder, one, pageOf, requireId, type Page } from './util.js';

/** A tenant's jobs, or (scope null) the system's own. */
export function scoped(scope: JobScope): SQL {
  return scope === null ? isNull(jobs.tenantId) : eq(jobs.tenantId, scope);
}

export async function get(db: Db, scope: JobScope, id: string): Promise<Job> {
  requireId(id, 'job');
  const rows = await db
    .select()
    .from(jobs)
    .where(and(eq(jobs.id, id), scoped(scope)));
  return one(rows, 'job', id);
}

/** Jobs of `kind` made for `jobId` (payload.jobId), oldest first: e.g. its webhook deliveries. */
export async function listFollowUps(db: Db, scope: JobScope, kind: string, jobId: string): Promise<Job[]> {
  return db
    .select()
    .from(jobs)
    .where(and(scoped(scope), eq(jobs.kind, kind), sql`${jobs.payload}->>'jobId' = ${jobId}`))
    .orderBy(asc(jobs.createdAt), asc(jobs.id));
}

/** Newest first. */
export async function list(
  db: Db,
  scope: JobScope,
  opts: Page & { kind?: string; status?: JobStatus[] } = {},
): Promise<Job[]> {
  const { limit, offset } = pageOf(opts);
  return db
    .select()
    .from(jobs)
    .where(
      and(
        scoped(scope),
        opts.kind === undefined ? undefined : eq(jobs.kind, opts.kind),
        opts.status === undefined ? undefined : inArray(jobs.status, opts.status),
        afterCursor(jobs, 'desc', opts.after),
      ),
    )
    .orderBy(...keysetOrder(jobs, 'desc'))
    .limit(limit)
    .offset(offset);
}

/** A tenant's jobs whose payload names one of `adapterIds`, newest first. */
export async function listForAdapters(db: Db, tenantId: string, adapterIds: readonly string[]): Promise<Job[]> {
  if (adapterIds.length === 0) return [];
  return db
    .select()
    .from(jobs)
    .where(and(eq(jobs.tenantId, tenantId), inArray(sql<string>`${jobs.payload}->>'adapterId'`, [...adapterIds])))
    .orderBy(desc(jobs.createdAt));
}

/** Jobs of `kind` by status, across every tenant and process sharing the database. */
export async function countByStatus(db: Db, kind: string): Promise<Partial<Record<JobStatus, number>>> {
  const rows = await db.select({ status: jobs.status, n: count() }).from(jobs).where(eq(jobs.kind, kind)).groupBy(jobs.status);
  return Object.fromEntries(rows.map((r) => [r.status, Number(r.n)]));
}
