/**
 * Tenant administration (admin token only): create, list, get with usage, delete with all data.
 *
 * Deleting is two steps so that it takes effect at once and can be finished after a failure:
 * the soft delete (the repository's `remove`) revokes every key in the same transaction; then the
 * purge cancels the tenant's jobs, deletes every blob its rows name plus anything under its blob
 * prefix, and finally deletes the tenant row, which cascades to every owned row. A purge that
 * fails half-way is finished by deleting the tenant again.
 */
import { eq } from 'drizzle-orm';
import { z } from 'zod';
import * as tenantsRepo from '../db/repos/tenants.js';
import { JobQueue } from '../jobs/queue.js';
import { adapterVersions, datasets, tenants, type Tenant } from '../db/schema.js';
import { isUuid } from '../db/errors.js';
import { notFound, validationError } from '../errors.js';
import { nameSchema } from '../text.js';
import type { ServingEngine } from '../serve/index.js';
import { deletePrefix } from '../storage/index.js';
import type { KeyRevocations } from './auth.js';
import type { Page } from '../db/repos/util.js';
import type { ServiceDeps } from './context.js';

export const createTenantInput = z.object({
  name: nameSchema((s) =>
    s
      .trim()
      .min(1)
      .max(100)
      .regex(/^[\p{L}\p{N}][\p{L}\p{N} ._-]*$/u, 'letters, digits, spaces, ".", "_" or "-", starting with a letter or digit'),
  ),
});
export type CreateTenantInput = z.input<typeof createTenantInput>;

/** The blob key prefix every object of a tenant lives under (services keep to it). */
export function tenantBlobPrefix(tenantId: string): string {
  return `tenants/${tenantId}/`;
}

type Deps = Pick<ServiceDeps, 'database' | 'blobs' | 'log'>;

export function createTenant({ deps, input }: { deps: Pick<ServiceDeps, 'database'>; input: CreateTenantInput }): Promise<Tenant> {
  const parsed = createTenantInput.safeParse(input);
  if (!parsed.success) throw validationError(parsed.error);
  return tenantsRepo.create(deps.database.db, parsed.data);
}

export function listTenants({ deps, page = {} }: { deps: Pick<ServiceDeps, 'database'>; page?: Page }): Promise<Tenant[]> {
  return tenantsRepo.list(deps.database.db, page);
}

export async function getTenant({
  deps,
  id,
}: {
  deps: Pick<ServiceDeps, 'database'>;
  id: string;
}): Promise<{ tenant: Tenant; usage: tenantsRepo.Usage }> {
  const tenant = await tenantsRepo.get(deps.database.db, id);
  return { tenant, usage: await tenantsRepo.usage(deps.database.db, id) };
}

/** Its adapter versions leave this process's serving engine (`engine`, when given) before and after its files go. */
export async function deleteTenant({ deps, id: tenantId }: { deps: Deps & { auth?: KeyRevocations; engine?: Pick<ServingEngine, 'evictVersions'> }; id: string }): Promise<void> {
  const db = deps.database.db;
  if (!isUuid(tenantId)) throw notFound('tenant', tenantId);
  const [row] = await db.select().from(tenants).where(eq(tenants.id, tenantId));
  if (row === undefined) throw notFound('tenant', tenantId);
  if (row.deletedAt === null) await tenantsRepo.remove(db, tenantId);
  deps.auth?.forgetTenant(tenantId);

  // Stop its training first, so no worker publishes into a tenant being purged.
  const queue = JobQueue.of(deps);
  await queue.cancelActive(await queue.list(tenantId, { status: ['queued', 'running'], limit: 1000 }), tenantId);
  const keys = new Set<string>();
  for (const d of await db.select().from(datasets).where(eq(datasets.tenantId, tenantId))) {
    if (d.rawKey !== null) keys.add(d.rawKey);
    if (d.preparedKey !== null) keys.add(d.preparedKey);
  }
  const versionIds: string[] = [];
  for (const v of await db.select({ id: adapterVersions.id, key: adapterVersions.objectKey }).from(adapterVersions).where(eq(adapterVersions.tenantId, tenantId))) {
    keys.add(v.key);
    versionIds.push(v.id);
  }
  deps.engine?.evictVersions(versionIds);
  for (const key of keys) await deps.blobs.delete(key);
  deps.engine?.evictVersions(versionIds);
  const swept = await deletePrefix(deps.blobs, tenantBlobPrefix(tenantId));
  // The repositories only soft-delete tenants; the hard delete cascades to every owned row.
  await db.delete(tenants).where(eq(tenants.id, tenantId));
  deps.log.info({ tenantId, blobs: keys.size + swept }, 'tenant purged');
}
