/**
 * Adapters, their immutable versions and the named aliases pointing at versions. Deleting an
 * adapter is two-phase: `remove` hides it (name freed, aliases gone) and returns the blob keys to
 * delete; `purge` then drops its rows.
 */
import { and, asc, eq, isNotNull, isNull, max, sql } from 'drizzle-orm';
import { AppError, notFound } from '../../errors.js';
import { dbCall, isUuid } from '../errors.js';
import type { Db } from '../open.js';
import {
  adapterAliases,
  adapters,
  adapterVersions,
  type Adapter,
  type AdapterAlias,
  type AdapterSpec,
  type AdapterVersion,
  type VersionSource,
} from '../schema.js';
import { afterCursor, keysetOrder, one, pageOf, requireId, type Page } from './util.js';

const MESSAGES = {
  adapters_tenant_name_live_uq: 'an adapter with this name already exists',
  adapters_tenant_id_tenants_id_fk: 'tenant not found',
  adapter_versions_job_uq: 'this job already published a version',
  adapter_versions_job_id_jobs_id_fk: 'job not found',
  adapter_versions_dataset_id_datasets_id_fk: 'dataset not found',
  adapter_aliases_version_fk: 'version not found',
};

export const LATEST = 'latest';
const ALIAS_RE = /^[A-Za-z][A-Za-z0-9._-]{0,63}$/;

function checkAlias(alias: string): void {
  if (!ALIAS_RE.test(alias)) {
    throw new AppError('validation_failed', `invalid alias '${alias}': a letter, then up to 63 letters, digits, '.', '_' or '-'`);
  }
}

export async function create(db: Db, tenantId: string, input: { name: string; description?: string }): Promise<Adapter> {
  requireId(tenantId, 'tenant');
  const rows = await dbCall(
    () =>
      db
        .insert(adapters)
        .values({ tenantId, name: input.name, description: input.description ?? '' })
        .returning(),
    MESSAGES,
  );
  return one(rows, 'adapter');
}

export async function get(db: Db, tenantId: string, id: string): Promise<Adapter> {
  requireId(id, 'adapter');
  const rows = await db
    .select()
    .from(adapters)
    .where(and(eq(adapters.id, id), eq(adapters.tenantId, tenantId), isNull(adapters.deletedAt)));
  return one(rows, 'adapter', id);
}

export async function getByName(db: Db, tenantId: string, name: string): Promise<Adapter> {
  const rows = await db
    .select()
    .from(adapters)
    .where(and(eq(adapters.name, name), eq(adapters.tenantId, tenantId), isNull(adapters.deletedAt)));
  return one(rows, 'adapter', name);
}

/** By id when `ref` is a uuid, else by name. */
export async function getByRef(db: Db, tenantId: string, ref: string): Promise<Adapter> {
  return isUuid(ref) ? get(db, tenantId, ref) : getByName(db, tenantId, ref);
}

/** Oldest first. */
export async function list(db: Db, tenantId: string, page?: Page): Promise<Adapter[]> {
  const { limit, offset } = pageOf(page);
  return db
    .select()
    .from(adapters)
    .where(and(eq(adapters.tenantId, tenantId), isNull(adapters.deletedAt), afterCursor(adapters, 'asc', page?.after)))
    .orderBy(...keysetOrder(adapters, 'asc'))
    .limit(limit)
    .offset(offset);
}

export async function update(db: Db, tenantId: string, id: string, patch: { description?: string }): Promise<Adapter> {
  requireId(id, 'adapter');
  const rows = await db
    .update(adapters)
    .set({ ...patch, updatedAt: sql`now()` })
    .where(and(eq(adapters.id, id), eq(adapters.tenantId, tenantId), isNull(adapters.deletedAt)))
    .returning();
  return one(rows, 'adapter', id);
}

/** Hide the adapter (its name is free again) and return its versions' blob keys for deletion. */
export async function remove(db: Db, tenantId: string, id: string): Promise<{ adapter: Adapter; objectKeys: string[] }> {
  requireId(id, 'adapter');
  return db.transaction(async (tx) => {
    const rows = await tx
      .update(adapters)
      .set({ deletedAt: sql`now()`, updatedAt: sql`now()` })
      .where(and(eq(adapters.id, id), eq(adapters.tenantId, tenantId), isNull(adapters.deletedAt)))
      .returning();
    const adapter = one(rows, 'adapter', id);
    await tx.delete(adapterAliases).where(and(eq(adapterAliases.adapterId, id), eq(adapterAliases.tenantId, tenantId)));
    const keys = await tx
      .select({ key: adapterVersions.objectKey })
      .from(adapterVersions)
      .where(and(eq(adapterVersions.adapterId, id), eq(adapterVersions.tenantId, tenantId)));
    return { adapter, objectKeys: keys.map((k) => k.key) };
  });
}

/** Drop the rows of an adapter `remove` already hid (after its blobs are gone). */
export async function purge(db: Db, tenantId: string, id: string): Promise<void> {
  requireId(id, 'adapter');
  const rows = await db
    .delete(adapters)
    .where(and(eq(adapters.id, id), eq(adapters.tenantId, tenantId), isNotNull(adapters.deletedAt)))
    .returning({ id: adapters.id });
  one(rows, 'deleted adapter', id);
}

export interface NewVersion {
  objectKey: string;
  spec: AdapterSpec;
  metrics?: Record<string, unknown>;
  backboneId: string;
  byteSize: number;
  source: VersionSource;
  /** The publishing job: a second publish by the same job returns the first version. */
  jobId?: string | null;
  datasetId?: string | null;
  /** Aliases to point at the new version (default ['latest']). */
  aliases?: string[];
}

/**
 * Publish the next version in one transaction: lock the adapter row (so concurrent publishes get
 * consecutive numbers), insert the version, move the aliases. Idempotent per job id: `created`
 * is false when this job had already published, and the caller should drop its duplicate blob.
 */
export async function publishVersion(
  db: Db,
  tenantId: string,
  adapterId: string,
  input: NewVersion,
): Promise<{ version: AdapterVersion; created: boolean }> {
  requireId(adapterId, 'adapter');
  const aliases = input.aliases ?? [LATEST];
  aliases.forEach(checkAlias);
  return dbCall(
    () =>
      db.transaction(async (tx) => {
        const locked = await tx
          .select({ id: adapters.id })
          .from(adapters)
          .where(and(eq(adapters.id, adapterId), eq(adapters.tenantId, tenantId), isNull(adapters.deletedAt)))
          .for('update');
        one(locked, 'adapter', adapterId);
        if (input.jobId != null) {
          const existing = await tx.select().from(adapterVersions).where(eq(adapterVersions.jobId, input.jobId));
          if (existing[0] !== undefined) {
            if (existing[0].adapterId !== adapterId) {
              throw new AppError('conflict', 'this job already published a version of another adapter');
            }
            return { version: existing[0], created: false };
          }
        }
        const [top] = await tx
          .select({ v: max(adapterVersions.version) })
          .from(adapterVersions)
          .where(eq(adapterVersions.adapterId, adapterId));
        const rows = await tx
          .insert(adapterVersions)
          .values({
            adapterId,
            tenantId,
            version: (top?.v ?? 0) + 1,
            objectKey: input.objectKey,
            spec: input.spec,
            metrics: input.metrics ?? {},
            backboneId: input.backboneId,
            byteSize: input.byteSize,
            source: input.source,
            jobId: input.jobId ?? null,
            datasetId: input.datasetId ?? null,
          })
          .returning();
        const version = one(rows, 'adapter version');
        for (const alias of aliases) await upsertAlias(tx, tenantId, adapterId, alias, version.id);
        await tx.update(adapters).set({ updatedAt: sql`now()` }).where(eq(adapters.id, adapterId));
        return { version, created: true };
      }),
    MESSAGES,
  );
}

async function upsertAlias(db: Db, tenantId: string, adapterId: string, alias: string, versionId: string): Promise<AdapterAlias> {
  const rows = await db
    .insert(adapterAliases)
    .values({ adapterId, tenantId, alias, versionId })
    .onConflictDoUpdate({
      target: [adapterAliases.adapterId, adapterAliases.alias],
      set: { versionId, updatedAt: sql`now()` },
    })
    .returning();
  return one(rows, 'alias');
}

export async function getVersion(db: Db, tenantId: string, adapterId: string, version: number): Promise<AdapterVersion> {
  requireId(adapterId, 'adapter');
  const rows = await db
    .select({ v: adapterVersions })
    .from(adapterVersions)
    .innerJoin(adapters, eq(adapters.id, adapterVersions.adapterId))
    .where(
      and(
        eq(adapterVersions.adapterId, adapterId),
        eq(adapterVersions.tenantId, tenantId),
        eq(adapterVersions.version, version),
        isNull(adapters.deletedAt),
      ),
    );
  return one(rows, 'adapter version', String(version)).v;
}

export async function getVersionById(db: Db, tenantId: string, versionId: string): Promise<AdapterVersion> {
  requireId(versionId, 'adapter version');
  const rows = await db
    .select()
    .from(adapterVersions)
    .where(and(eq(adapterVersions.id, versionId), eq(adapterVersions.tenantId, tenantId)));
  return one(rows, 'adapter version', versionId);
}

/** The version a job published, if it did (retried jobs check before training again). */
export async function findVersionByJob(db: Db, tenantId: string, jobId: string): Promise<AdapterVersion | undefined> {
  requireId(jobId, 'job');
  const rows = await db
    .select()
    .from(adapterVersions)
    .where(and(eq(adapterVersions.jobId, jobId), eq(adapterVersions.tenantId, tenantId)));
  return rows[0];
}

/** Oldest first. */
export async function listVersions(db: Db, tenantId: string, adapterId: string): Promise<AdapterVersion[]> {
  requireId(adapterId, 'adapter');
  return db
    .select()
    .from(adapterVersions)
    .where(and(eq(adapterVersions.adapterId, adapterId), eq(adapterVersions.tenantId, tenantId)))
    .orderBy(asc(adapterVersions.version));
}

/** Point `alias` at version number `version` of the adapter. */
export async function setAlias(
  db: Db,
  tenantId: string,
  adapterId: string,
  alias: string,
  version: number,
): Promise<AdapterAlias> {
  checkAlias(alias);
  const v = await getVersion(db, tenantId, adapterId, version);
  return dbCall(() => upsertAlias(db, tenantId, adapterId, alias, v.id), MESSAGES);
}

export async function deleteAlias(db: Db, tenantId: string, adapterId: string, alias: string): Promise<void> {
  requireId(adapterId, 'adapter');
  const rows = await db
    .delete(adapterAliases)
    .where(
      and(eq(adapterAliases.adapterId, adapterId), eq(adapterAliases.tenantId, tenantId), eq(adapterAliases.alias, alias)),
    )
    .returning({ alias: adapterAliases.alias });
  one(rows, 'alias', alias);
}

export async function listAliases(
  db: Db,
  tenantId: string,
  adapterId: string,
): Promise<Array<{ alias: string; version: number; versionId: string; updatedAt: Date }>> {
  requireId(adapterId, 'adapter');
  return db
    .select({
      alias: adapterAliases.alias,
      version: adapterVersions.version,
      versionId: adapterAliases.versionId,
      updatedAt: adapterAliases.updatedAt,
    })
    .from(adapterAliases)
    .innerJoin(adapterVersions, eq(adapterVersions.id, adapterAliases.versionId))
    .where(and(eq(adapterAliases.adapterId, adapterId), eq(adapterAliases.tenantId, tenantId)))
    .orderBy(asc(adapterAliases.alias));
}

/**
 * What a classify request names: an adapter by id or name, and a version by number (number or
 * digit string) or alias (default 'latest').
 */
export async function resolve(
  db: Db,
  tenantId: string,
  adapterRef: string,
  versionRef: string | number = LATEST,
): Promise<{ adapter: Adapter; version: AdapterVersion }> {
  const asNumber = typeof versionRef === 'number' ? versionRef : /^\d{1,9}$/.test(versionRef) ? Number(versionRef) : undefined;
  const alias = asNumber === undefined ? String(versionRef) : undefined;
  // One round trip on every classify: the adapter, left-joined to the version it names (through
  // the alias when there is one), so "no adapter" and "no such version" are still told apart.
  const versionOn =
    alias !== undefined
      ? eq(adapterVersions.id, adapterAliases.versionId)
      : and(eq(adapterVersions.adapterId, adapters.id), eq(adapterVersions.tenantId, adapters.tenantId), eq(adapterVersions.version, asNumber!));
  const rows = await db
    .select({ adapter: adapters, version: adapterVersions })
    .from(adapters)
    .leftJoin(
      adapterAliases,
      and(eq(adapterAliases.adapterId, adapters.id), eq(adapterAliases.tenantId, adapters.tenantId), eq(adapterAliases.alias, alias ?? '')),
    )
    .leftJoin(adapterVersions, versionOn)
    .where(
      and(
        isUuid(adapterRef) ? eq(adapters.id, adapterRef) : eq(adapters.name, adapterRef),
        eq(adapters.tenantId, tenantId),
        isNull(adapters.deletedAt),
      ),
    );
  const row = one(rows, 'adapter', adapterRef);
  if (row.version === null) {
    throw alias !== undefined ? notFound(`version '${alias}' of adapter`, row.adapter.name) : notFound('adapter version', String(asNumber));
  }
  return { adapter: row.adapter, version: row.version };
}
