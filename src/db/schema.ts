/**
 * The one drizzle schema. `drizzle-kit generate` turns it into the checked-in SQL under drizzle/,
 * which runs unchanged on PostgreSQL 15 and on PGlite (PostgreSQL 18): keep to features 15 has.
 *
 * Tenant isolation is enforced twice: every repository filters by tenant id, and child rows point
 * at their parents through composite (id, tenant_id) foreign keys, so a row can never reference
 * another tenant's parent even if a query forgot the filter.
 */
import { sql } from 'drizzle-orm';
import {
  bigint,
  bigserial,
  boolean,
  foreignKey,
  index,
  integer,
  jsonb,
  pgEnum,
  pgTable,
  primaryKey,
  text,
  timestamp,
  unique,
  uniqueIndex,
  uuid,
} from 'drizzle-orm/pg-core';

const ts = (name: string) => timestamp(name, { withTimezone: true, mode: 'date' });
const createdAt = () => ts('created_at').notNull().defaultNow();

export const datasetStatus = pgEnum('dataset_status', ['pending', 'processing', 'ready', 'failed']);
export const jobStatus = pgEnum('job_status', ['queued', 'running', 'succeeded', 'failed', 'cancelled']);
export const versionSource = pgEnum('adapter_version_source', ['trained', 'imported']);

export type DatasetStatus = (typeof datasetStatus.enumValues)[number];
export type JobStatus = (typeof jobStatus.enumValues)[number];
export type VersionSource = (typeof versionSource.enumValues)[number];

/** Per-class image counts by split, e.g. { cat: { train: 40, val: 10 } }. */
export type ClassCounts = Record<string, Record<string, number>>;
/** A problem found while ingesting a data set (skipped file, bad label, …). */
export type DatasetProblem = { code: string; message: string; file?: string };
/** How an adapter version was built; enough to rebuild its CSN and heads. */
export type AdapterSpec = {
  rank: number;
  beta?: number;
  blocks: number[];
  kernel?: number;
  labels: string[];
  [k: string]: unknown;
};

/** The stored form of a model AdapterSpec (short keys for queries + the model's own names). */
export function storedSpecOf(spec: {
  rank: number;
  beta: number;
  loraBeforeBlocks: number[];
  addAfterBlocks: number[];
  fusionKernel: number;
  labels: string[];
}): AdapterSpec {
  return {
    rank: spec.rank,
    beta: spec.beta,
    blocks: spec.addAfterBlocks,
    kernel: spec.fusionKernel,
    labels: spec.labels,
    loraBeforeBlocks: spec.loraBeforeBlocks,
    addAfterBlocks: spec.addAfterBlocks,
    fusionKernel: spec.fusionKernel,
  };
}

export const tenants = pgTable(
  'tenants',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    name: text('name').notNull(),
    createdAt: createdAt(),
    deletedAt: ts('deleted_at'),
  },
  // A deleted tenant frees its name.
  (t) => [uniqueIndex('tenants_name_live_uq').on(t.name).where(sql`${t.deletedAt} is null`)],
);

export const apiKeys = pgTable(
  'api_keys',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    /** Public, unique lookup part of the key (shown in listings). */
    prefix: text('prefix').notNull().unique('api_keys_prefix_uq'),
    /** sha256 (hex) of the secret part; the secret itself is never stored. */
    hash: text('hash').notNull(),
    name: text('name').notNull().default(''),
    scopes: jsonb('scopes').$type<string[]>().notNull().default([]),
    createdAt: createdAt(),
    lastUsedAt: ts('last_used_at'),
    revokedAt: ts('revoked_at'),
  },
  (t) => [index('api_keys_tenant_idx').on(t.tenantId)],
);

export const datasets = pgTable(
  'datasets',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    status: datasetStatus('status').notNull().default('pending'),
    classes: jsonb('classes').$type<ClassCounts>().notNull().default({}),
    imageCount: integer('image_count').notNull().default(0),
    byteSize: bigint('byte_size', { mode: 'number' }).notNull().default(0),
    /** Blob key of the upload as received. */
    rawKey: text('raw_key'),
    /** Blob key of the validated, preprocessed examples. */
    preparedKey: text('prepared_key'),
    problems: jsonb('problems').$type<DatasetProblem[]>().notNull().default([]),
    error: text('error'),
    /**
     * While 'processing': the uploading process renews it; once it lapses the process is gone and
     * a reader marks the data set failed. Null in every other state.
     */
    leaseUntil: ts('lease_until'),
    createdAt: createdAt(),
    updatedAt: ts('updated_at').notNull().defaultNow(),
  },
  (t) => [
    index('datasets_tenant_created_idx').on(t.tenantId, t.createdAt),
    index('datasets_lease_idx').on(t.leaseUntil).where(sql`${t.status} = 'processing'`),
  ],
);

export const adapters = pgTable(
  'adapters',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    description: text('description').notNull().default(''),
    createdAt: createdAt(),
    updatedAt: ts('updated_at').notNull().defaultNow(),
    deletedAt: ts('deleted_at'),
  },
  (t) => [
    // A deleted adapter frees its name; the (id, tenant_id) pair is the target of child FKs.
    uniqueIndex('adapters_tenant_name_live_uq').on(t.tenantId, t.name).where(sql`${t.deletedAt} is null`),
    unique('adapters_id_tenant_uq').on(t.id, t.tenantId),
  ],
);

export const jobs = pgTable(
  'jobs',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    /** Null for system jobs that belong to no tenant. */
    tenantId: uuid('tenant_id').references(() => tenants.id, { onDelete: 'cascade' }),
    kind: text('kind').notNull(),
    payload: jsonb('payload').$type<unknown>().notNull().default({}),
    status: jobStatus('status').notNull().default('queued'),
    /** Higher runs first. */
    priority: integer('priority').notNull().default(0),
    /** Claims so far, counted when a worker takes the job. */
    attempts: integer('attempts').notNull().default(0),
    maxAttempts: integer('max_attempts').notNull().default(3),
    runAfter: ts('run_after').notNull().defaultNow(),
    leaseOwner: text('lease_owner'),
    leaseExpiresAt: ts('lease_expires_at'),
    progress: jsonb('progress').$type<unknown>(),
    result: jsonb('result').$type<unknown>(),
    error: text('error'),
    cancelRequested: boolean('cancel_requested').notNull().default(false),
    createdAt: createdAt(),
    startedAt: ts('started_at'),
    finishedAt: ts('finished_at'),
    updatedAt: ts('updated_at').notNull().defaultNow(),
  },
  (t) => [
    // The claim query: queued jobs by priority, then age.
    index('jobs_claim_idx')
      .on(t.priority.desc(), t.runAfter, t.createdAt)
      .where(sql`${t.status} = 'queued'`),
    index('jobs_lease_idx').on(t.leaseExpiresAt).where(sql`${t.status} = 'running'`),
    index('jobs_tenant_created_idx').on(t.tenantId, t.createdAt),
  ],
);

export const adapterVersions = pgTable(
  'adapter_versions',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    adapterId: uuid('adapter_id').notNull(),
    tenantId: uuid('tenant_id').notNull(),
    /** 1, 2, 3, … per adapter; assigned by publishVersion. */
    version: integer('version').notNull(),
    objectKey: text('object_key').notNull(),
    spec: jsonb('spec').$type<AdapterSpec>().notNull(),
    metrics: jsonb('metrics').$type<Record<string, unknown>>().notNull().default({}),
    backboneId: text('backbone_id').notNull(),
    byteSize: bigint('byte_size', { mode: 'number' }).notNull(),
    source: versionSource('source').notNull(),
    /** The training job that produced it; unique so a retried job never publishes twice. */
    jobId: uuid('job_id').references(() => jobs.id, { onDelete: 'set null' }),
    datasetId: uuid('dataset_id').references(() => datasets.id, { onDelete: 'set null' }),
    createdAt: createdAt(),
  },
  (t) => [
    foreignKey({
      name: 'adapter_versions_adapter_fk',
      columns: [t.adapterId, t.tenantId],
      foreignColumns: [adapters.id, adapters.tenantId],
    }).onDelete('cascade'),
    unique('adapter_versions_adapter_version_uq').on(t.adapterId, t.version),
    unique('adapter_versions_job_uq').on(t.jobId),
    unique('adapter_versions_id_adapter_uq').on(t.id, t.adapterId),
    index('adapter_versions_tenant_idx').on(t.tenantId),
  ],
);

export const adapterAliases = pgTable(
  'adapter_aliases',
  {
    adapterId: uuid('adapter_id').notNull(),
    tenantId: uuid('tenant_id').notNull(),
    alias: text('alias').notNull(),
    versionId: uuid('version_id').notNull(),
    updatedAt: ts('updated_at').notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ name: 'adapter_aliases_pk', columns: [t.adapterId, t.alias] }),
    foreignKey({
      name: 'adapter_aliases_adapter_fk',
      columns: [t.adapterId, t.tenantId],
      foreignColumns: [adapters.id, adapters.tenantId],
    }).onDelete('cascade'),
    // An alias can only point at a version of its own adapter.
    foreignKey({
      name: 'adapter_aliases_version_fk',
      columns: [t.versionId, t.adapterId],
      foreignColumns: [adapterVersions.id, adapterVersions.adapterId],
    }).onDelete('cascade'),
  ],
);

export const jobEvents = pgTable(
  'job_events',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    jobId: uuid('job_id')
      .notNull()
      .references(() => jobs.id, { onDelete: 'cascade' }),
    tenantId: uuid('tenant_id'),
    at: ts('at').notNull().defaultNow(),
    type: text('type').notNull(),
    data: jsonb('data').$type<unknown>().notNull().default({}),
  },
  (t) => [index('job_events_job_idx').on(t.jobId, t.id)],
);

/**
 * Answers to creating POSTs sent with an Idempotency-Key, kept until `expires_at` so a retry gets
 * the first answer instead of creating again. `scope` is the tenant id (tenant keys) or 'admin';
 * `status` null = the first request is still running. Rows go with their tenant and, once
 * expired, with the maintenance sweep.
 */
export const idempotencyKeys = pgTable(
  'idempotency_keys',
  {
    scope: text('scope').notNull(),
    key: text('key').notNull(),
    tenantId: uuid('tenant_id').references(() => tenants.id, { onDelete: 'cascade' }),
    /** sha256 of method, path, query, content type and body (or, for streamed uploads, its length). */
    fingerprint: text('fingerprint').notNull(),
    status: integer('status'),
    contentType: text('content_type'),
    body: text('body'),
    createdAt: createdAt(),
    expiresAt: ts('expires_at').notNull(),
  },
  (t) => [primaryKey({ name: 'idempotency_keys_pk', columns: [t.scope, t.key] }), index('idempotency_keys_expires_idx').on(t.expiresAt)],
);

export type Tenant = typeof tenants.$inferSelect;
export type ApiKey = typeof apiKeys.$inferSelect;
export type Dataset = typeof datasets.$inferSelect;
export type Adapter = typeof adapters.$inferSelect;
export type AdapterVersion = typeof adapterVersions.$inferSelect;
export type AdapterAlias = typeof adapterAliases.$inferSelect;
export type Job = typeof jobs.$inferSelect;
export type JobEvent = typeof jobEvents.$inferSelect;
export type IdempotencyRecord = typeof idempotencyKeys.$inferSelect;
