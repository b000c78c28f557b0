/**
 * Read-only views of the job table for listings and metrics: the jobs that trained given
 * adapters, and jobs of one kind counted by status. Writes stay in jobs.ts.
 */
import { and, count, desc, eq, inArray, sql } from 'drizzle-orm';
import type { Db } from '../open.js';
import { jobs, type Job, type JobStatus } from '../schema.js';

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
