/** Data sets: one upload, its validation status, class counts and the blob keys it lives under. */
import { and, count, eq, inArray, lt, sql } from 'drizzle-orm';
import { dbCall } from '../errors.js';
import type { Db } from '../open.js';
import { datasets, type ClassCounts, type Dataset, type DatasetProblem, type DatasetStatus } from '../schema.js';
import { afterCursor, invalidState, keysetOrder, one, pageOf, requireId, type Page } from './util.js';

const MESSAGES = { datasets_tenant_id_tenants_id_fk: 'tenant not found' };

export interface NewDataset {
  name: string;
  status?: DatasetStatus;
  rawKey?: string | null;
  byteSize?: number;
  /** With status 'processing': the lease the uploading process holds (and renews), from now. */
  leaseMs?: number;
}

/** What a data set whose uploading process died reads as. */
export const INTERRUPTED = 'processing was interrupted; upload again';

// The database's clock, not this process's: replicas' clocks may differ, the database's is one.
const leaseFromNow = (ms: number) => sql`now() + ${Math.round(ms)} * interval '1 millisecond'`;

export interface DatasetPatch {
  name?: string;
  status?: DatasetStatus;
  classes?: ClassCounts;
  imageCount?: number;
  byteSize?: number;
  rawKey?: string | null;
  preparedKey?: string | null;
  problems?: DatasetProblem[];
  error?: string | null;
  leaseUntil?: Date | null;
}

export async function create(db: Db, tenantId: string, input: NewDataset): Promise<Dataset> {
  requireId(tenantId, 'tenant');
  const rows = await dbCall(
    () =>
      db
        .insert(datasets)
        .values({
          tenantId,
          name: input.name,
          status: input.status ?? 'pending',
          rawKey: input.rawKey ?? null,
          byteSize: input.byteSize ?? 0,
          leaseUntil: input.leaseMs === undefined ? null : leaseFromNow(input.leaseMs),
        })
        .returning(),
    MESSAGES,
  );
  return one(rows, 'dataset');
}

export async function get(db: Db, tenantId: string, id: string): Promise<Dataset> {
  requireId(id, 'dataset');
  const rows = await db
    .select()
    .from(datasets)
    .where(and(eq(datasets.id, id), eq(datasets.tenantId, tenantId)));
  return one(rows, 'dataset', id);
}

/** Newest first. */
export async function list(db: Db, tenantId: string, opts: Page & { status?: DatasetStatus } = {}): Promise<Dataset[]> {
  const { limit, offset } = pageOf(opts);
  const where = and(
    eq(datasets.tenantId, tenantId),
    opts.status === undefined ? undefined : eq(datasets.status, opts.status),
    afterCursor(datasets, 'desc', opts.after),
  );
  return db
    .select()
    .from(datasets)
    .where(where)
    .orderBy(...keysetOrder(datasets, 'desc'))
    .limit(limit)
    .offset(offset);
}

export async function countFor(db: Db, tenantId: string): Promise<number> {
  const [row] = await db.select({ n: count() }).from(datasets).where(eq(datasets.tenantId, tenantId));
  return Number(row?.n ?? 0);
}

/**
 * Update fields. With `fromStatus`, only while the row is in one of those states (a guarded state
 * transition): otherwise AppError 'invalid_state', so two ingest runs cannot both finish one set.
 */
export async function update(
  db: Db,
  tenantId: string,
  id: string,
  patch: DatasetPatch,
  opts: { fromStatus?: DatasetStatus[] } = {},
): Promise<Dataset> {
  requireId(id, 'dataset');
  const guard = and(
    eq(datasets.id, id),
    eq(datasets.tenantId, tenantId),
    opts.fromStatus === undefined ? undefined : inArray(datasets.status, opts.fromStatus),
  );
  const rows = await dbCall(() =>
    db
      .update(datasets)
      .set({ ...patch, updatedAt: sql`now()` })
      .where(guard)
      .returning(),
  );
  if (rows[0] !== undefined) return rows[0];
  const current = await get(db, tenantId, id); // throws not_found when it does not exist
  throw invalidState(`dataset '${id}' is ${current.status}, expected ${opts.fromStatus?.join(' or ')}`, {
    status: current.status,
  });
}

/**
 * Extends the lease of a data set this process is still writing. False when it is no longer
 * 'processing' (a reader found the lease lapsed and marked it failed, or it was deleted).
 */
export async function renewLease(db: Db, tenantId: string, id: string, leaseMs: number): Promise<boolean> {
  requireId(id, 'dataset');
  const rows = await dbCall(() =>
    db
      .update(datasets)
      .set({ leaseUntil: leaseFromNow(leaseMs) })
      .where(and(eq(datasets.id, id), eq(datasets.tenantId, tenantId), eq(datasets.status, 'processing')))
      .returning({ id: datasets.id }),
  );
  return rows.length > 0;
}

/**
 * Marks 'processing' data sets whose lease lapsed (their process died) as failed, of one tenant
 * or of all; returns them. A read finds none in the common case, and only then writes. Their blobs
 * are named by no row, so the maintenance sweep deletes them.
 */
export async function expireLeases(db: Db, tenantId?: string): Promise<Array<{ tenantId: string; id: string }>> {
  const lapsed = and(
    tenantId === undefined ? undefined : eq(datasets.tenantId, tenantId),
    eq(datasets.status, 'processing'),
    lt(datasets.leaseUntil, sql`now()`),
  );
  const found = await db.select({ id: datasets.id }).from(datasets).where(lapsed).limit(1);
  if (found.length === 0) return [];
  return dbCall(() =>
    db
      .update(datasets)
      .set({ status: 'failed', error: INTERRUPTED, byteSize: 0, leaseUntil: null, updatedAt: sql`now()` })
      .where(lapsed)
      .returning({ tenantId: datasets.tenantId, id: datasets.id }),
  );
}

/** Delete the row and return it, so the caller can delete its blobs. */
export async function remove(db: Db, tenantId: string, id: string): Promise<Dataset> {
  requireId(id, 'dataset');
  const rows = await dbCall(() =>
    db
      .delete(datasets)
      .where(and(eq(datasets.id, id), eq(datasets.tenantId, tenantId)))
      .returning(),
  );
  return one(rows, 'dataset', id);
}
