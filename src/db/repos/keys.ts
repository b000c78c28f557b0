/**
 * API keys. Only a public lookup prefix and the sha256 of the secret are stored; generating keys
 * and comparing hashes is the keys service's job.
 */
import { and, asc, eq, isNull, lt, or, sql } from 'drizzle-orm';
import { dbCall } from '../errors.js';
import type { Db } from '../open.js';
import { apiKeys, tenants, type ApiKey, type Tenant } from '../schema.js';
import { one, requireId } from './util.js';

const MESSAGES = {
  api_keys_prefix_uq: 'an API key with this prefix already exists',
  api_keys_tenant_id_tenants_id_fk: 'tenant not found',
};

export interface NewKey {
  prefix: string;
  /** sha256 hex of the secret. */
  hash: string;
  name?: string;
  scopes?: string[];
}

export async function create(db: Db, tenantId: string, input: NewKey): Promise<ApiKey> {
  requireId(tenantId, 'tenant');
  const rows = await dbCall(
    () =>
      db
        .insert(apiKeys)
        .values({ tenantId, prefix: input.prefix, hash: input.hash, name: input.name ?? '', scopes: input.scopes ?? [] })
        .returning(),
    MESSAGES,
  );
  return one(rows, 'api key');
}

export async function get(db: Db, tenantId: string, id: string): Promise<ApiKey> {
  requireId(id, 'api key');
  const rows = await db
    .select()
    .from(apiKeys)
    .where(and(eq(apiKeys.id, id), eq(apiKeys.tenantId, tenantId)));
  return one(rows, 'api key', id);
}

export async function list(db: Db, tenantId: string): Promise<ApiKey[]> {
  return db.select().from(apiKeys).where(eq(apiKeys.tenantId, tenantId)).orderBy(asc(apiKeys.createdAt), asc(apiKeys.id));
}

/**
 * The authentication lookup, and so the one query not scoped by a tenant id (the key is what
 * tells us the tenant). Only a key that is not revoked, of a tenant that is not deleted.
 */
export async function findActiveByPrefix(db: Db, prefix: string): Promise<{ key: ApiKey; tenant: Tenant } | undefined> {
  const rows = await db
    .select({ key: apiKeys, tenant: tenants })
    .from(apiKeys)
    .innerJoin(tenants, eq(tenants.id, apiKeys.tenantId))
    .where(and(eq(apiKeys.prefix, prefix), isNull(apiKeys.revokedAt), isNull(tenants.deletedAt)));
  return rows[0];
}

/** Idempotent: a key revoked twice keeps its first revocation time. */
export async function revoke(db: Db, tenantId: string, id: string): Promise<ApiKey> {
  requireId(id, 'api key');
  const rows = await db
    .update(apiKeys)
    .set({ revokedAt: sql`coalesce(${apiKeys.revokedAt}, now())` })
    .where(and(eq(apiKeys.id, id), eq(apiKeys.tenantId, tenantId)))
    .returning();
  return one(rows, 'api key', id);
}

/**
 * Record a use. Writes only when the stored time is older than `minIntervalMs`, so a busy key
 * costs one write a minute rather than one per request.
 */
export async function touch(db: Db, id: string, minIntervalMs = 60_000): Promise<void> {
  requireId(id, 'api key');
  await db
    .update(apiKeys)
    .set({ lastUsedAt: sql`now()` })
    .where(
      and(
        eq(apiKeys.id, id),
        or(isNull(apiKeys.lastUsedAt), lt(apiKeys.lastUsedAt, sql`now() - make_interval(secs => ${minIntervalMs / 1000})`)),
      ),
    );
}
