/** Tenants: the root of every owned row. Deleting one is a soft delete that frees its name. */
import { and, count, eq, isNull, sql, sum } from 'drizzle-orm';
import { dbCall } from '../errors.js';
import type { Db } from '../open.js';
import { adapters, adapterVersions, apiKeys, datasets, tenants, type Tenant } from '../schema.js';
import { afterCursor, keysetOrder, one, pageOf, requireId, type Page } from './util.js';

const MESSAGES = { tenants_name_live_uq: 'a tenant with this name already exists' };

export async function create(db: Db, input: { name: string }): Promise<Tenant> {
  const rows = await dbCall(() => db.insert(tenants).values({ name: input.name }).returning(), MESSAGES);
  return one(rows, 'tenant');
}

export async function get(db: Db, id: string): Promise<Tenant> {
  requireId(id, 'tenant');
  const rows = await db
    .select()
    .from(tenants)
    .where(and(eq(tenants.id, id), isNull(tenants.deletedAt)));
  return one(rows, 'tenant', id);
}

export async function getByName(db: Db, name: string): Promise<Tenant> {
  const rows = await db
    .select()
    .from(tenants)
    .where(and(eq(tenants.name, name), isNull(tenants.deletedAt)));
  return one(rows, 'tenant', name);
}

export async function list(db: Db, page?: Page): Promise<Tenant[]> {
  const { limit, offset } = pageOf(page);
  return db
    .select()
    .from(tenants)
    .where(and(isNull(tenants.deletedAt), afterCursor(tenants, 'asc', page?.after)))
    .orderBy(...keysetOrder(tenants, 'asc'))
    .limit(limit)
    .offset(offset);
}

/** Soft delete: the tenant and all its keys stop working at once; its name becomes free. */
export async function remove(db: Db, id: string): Promise<Tenant> {
  requireId(id, 'tenant');
  return db.transaction(async (tx) => {
    const rows = await tx
      .update(tenants)
      .set({ deletedAt: sql`now()` })
      .where(and(eq(tenants.id, id), isNull(tenants.deletedAt)))
      .returning();
    const tenant = one(rows, 'tenant', id);
    await tx
      .update(apiKeys)
      .set({ revokedAt: sql`now()` })
      .where(and(eq(apiKeys.tenantId, id), isNull(apiKeys.revokedAt)));
    return tenant;
  });
}

export interface Usage {
  datasets: number;
  adapters: number;
  /** Bytes held in the blob store: data sets plus versions of live adapters. */
  bytes: number;
}

/** What a tenant holds, for quota checks. */
export async function usage(db: Db, tenantId: string): Promise<Usage> {
  requireId(tenantId, 'tenant');
  const [d] = await db
    .select({ n: count(), bytes: sum(datasets.byteSize) })
    .from(datasets)
    .where(eq(datasets.tenantId, tenantId));
  const [a] = await db
    .select({ n: count() })
    .from(adapters)
    .where(and(eq(adapters.tenantId, tenantId), isNull(adapters.deletedAt)));
  const [v] = await db
    .select({ bytes: sum(adapterVersions.byteSize) })
    .from(adapterVersions)
    .innerJoin(adapters, eq(adapters.id, adapterVersions.adapterId))
    .where(and(eq(adapterVersions.tenantId, tenantId), isNull(adapters.deletedAt)));
  return {
    datasets: Number(d?.n ?? 0),
    adapters: Number(a?.n ?? 0),
    bytes: Number(d?.bytes ?? 0) + Number(v?.bytes ?? 0),
  };
}
