/**
 * Cross-tenant reads for the maintenance sweep (services/maintenance.ts): what an interrupted
 * request or a crashed process can leave behind. Nothing here is reachable from a tenant's API.
 */
import { and, eq, isNotNull, lt } from 'drizzle-orm';
import type { Db } from '../open.js';
import { adapterVersions, adapters, datasets, tenants } from '../schema.js';

/** Tenants deleted (soft) before `cutoff`: their purge did not finish. */
export async function deletedTenantsBefore(db: Db, cutoff: Date): Promise<string[]> {
  const rows = await db
    .select({ id: tenants.id })
    .from(tenants)
    .where(and(isNotNull(tenants.deletedAt), lt(tenants.deletedAt, cutoff)));
  return rows.map((r) => r.id);
}

/** Adapters deleted (soft) before `cutoff`, with their version files: the delete did not finish. */
export async function deletedAdaptersBefore(db: Db, cutoff: Date): Promise<Array<{ tenantId: string; id: string; objectKeys: string[] }>> {
  const rows = await db
    .select({ tenantId: adapters.tenantId, id: adapters.id, objectKey: adapterVersions.objectKey })
    .from(adapters)
    .leftJoin(adapterVersions, and(eq(adapterVersions.adapterId, adapters.id), eq(adapterVersions.tenantId, adapters.tenantId)))
    .where(and(isNotNull(adapters.deletedAt), lt(adapters.deletedAt, cutoff)));
  const byId = new Map<string, { tenantId: string; id: string; objectKeys: string[] }>();
  for (const r of rows) {
    const entry = byId.get(r.id) ?? { tenantId: r.tenantId, id: r.id, objectKeys: [] };
    if (r.objectKey !== null) entry.objectKeys.push(r.objectKey);
    byId.set(r.id, entry);
  }
  return [...byId.values()];
}

/** Every blob key a row names (data set uploads and prepared forms, adapter version files). */
export async function referencedBlobKeys(db: Db): Promise<Set<string>> {
  const keys = new Set<string>();
  for (const d of await db.select({ raw: datasets.rawKey, prepared: datasets.preparedKey }).from(datasets)) {
    if (d.raw !== null) keys.add(d.raw);
    if (d.prepared !== null) keys.add(d.prepared);
  }
  for (const v of await db.select({ key: adapterVersions.objectKey }).from(adapterVersions)) keys.add(v.key);
  return keys;
}

/**
 * Data sets in status 'processing', with when they were last touched and their lease: those with
 * a lease are being written (their blobs exist before the row names them; a lapsed lease was
 * failed by `datasetsRepo.expireLeases` first); without one, young ones may be in progress and
 * old ones were left by a dead request.
 */
export async function processingDatasets(db: Db): Promise<Array<{ tenantId: string; id: string; updatedAt: Date; leaseUntil: Date | null }>> {
  return db
    .select({ tenantId: datasets.tenantId, id: datasets.id, updatedAt: datasets.updatedAt, leaseUntil: datasets.leaseUntil })
    .from(datasets)
    .where(eq(datasets.status, 'processing'));
}
