/**
 * Response and shared request shapes of the public API (zod → OpenAPI components), and the
 * mappers from database rows to them. Timestamps are ISO 8601 strings; ids are UUIDs.
 */
import { z } from '@hono/zod-openapi';
import type { AdapterVersion, ApiKey, Tenant } from '../db/schema.js';
import { ERROR_CODES, type ErrorCode } from '../errors.js';
import { textProblem } from '../text.js';
import { SCOPES } from '../services/auth.js';
import type { AdapterView } from '../services/adapters.js';
import type { DatasetView } from '../services/datasets.js';
import { toJobView, type JobView } from '../services/training.js';

const codes = Object.keys(ERROR_CODES) as [ErrorCode, ...ErrorCode[]];

export const ErrorSchema = z
  .object({
    error: z.object({
      code: z.enum(codes).openapi({ description: 'Stable machine-readable code.' }),
      message: z.string().openapi({ description: 'Human-readable explanation.' }),
      requestId: z.string().openapi({ description: 'Also in the X-Request-Id response header; quote it in reports.' }),
      details: z.record(z.string(), z.unknown()).optional(),
    }),
  })
  .openapi('Error');

const iso = z.string().openapi({ format: 'date-time', example: '2025-01-01T00:00:00.000Z' });
export const uuid = z.string().openapi({ format: 'uuid', example: '0b5e3f0e-8d1c-4a6e-9f0f-2d7c1f9a2b34' });
const isoOf = (d: Date) => d.toISOString();
const isoOrNull = (d: Date | null) => (d === null ? null : d.toISOString());

/** Path ids are plain strings: something that is not a UUID names nothing and answers 404. */
export const idParam = (name: string, description: string) =>
  z
    .string()
    .max(200)
    .refine((s) => textProblem(s) === undefined, { message: 'must not contain control or bidirectional-control characters' })
    .openapi({ param: { name, in: 'path' }, description, example: '0b5e3f0e-8d1c-4a6e-9f0f-2d7c1f9a2b34' });

/** No listing reaches 2³¹ rows; a bound keeps absurd offsets (1e20) from failing in the database. */
const MAX_OFFSET = 2_147_483_647;

export const PageQuery = z.object({
  limit: z.coerce.number().int().min(1).max(1000).default(100).openapi({ description: 'At most this many items.' }),
  cursor: z
    .string()
    .max(200)
    .optional()
    .openapi({ description: "Where the page starts: a previous page's `nextCursor` (opaque; keep the other query parameters as they were)." }),
  offset: z.coerce
    .number()
    .int()
    .min(0)
    .max(MAX_OFFSET)
    .default(0)
    .openapi({ deprecated: true, description: 'Deprecated (kept for one release): follow `nextCursor` instead. Not with `cursor`.' }),
});

// ---- tenants and keys ----

export const TenantSchema = z.object({ id: uuid, name: z.string(), createdAt: iso }).openapi('Tenant');
export const UsageSchema = z
  .object({ datasets: z.number().int(), adapters: z.number().int(), bytes: z.number().int() })
  .openapi('Usage');
export const TenantDetailSchema = TenantSchema.extend({ usage: UsageSchema }).openapi('TenantDetail');

export function tenantDto(t: Tenant): z.infer<typeof TenantSchema> {
  return { id: t.id, name: t.name, createdAt: isoOf(t.createdAt) };
}

export const ScopeSchema = z.enum(SCOPES).openapi('Scope', {
  description: 'classify: classify with adapters · train: data sets, adapters, jobs · manage: API keys',
});

export const ApiKeySchema = z
  .object({
    id: uuid,
    name: z.string(),
    prefix: z.string().openapi({ description: 'Public part of the key, `dtl_<prefix>_…`.' }),
    scopes: z.array(ScopeSchema),
    createdAt: iso,
    lastUsedAt: iso.nullable(),
    revokedAt: iso.nullable(),
  })
  .openapi('ApiKey');

export const CreatedKeySchema = z
  .object({
    key: ApiKeySchema,
    token: z.string().openapi({ description: 'The secret key. Shown once: store it now.', example: 'dtl_0123456789ab_…' }),
  })
  .openapi('CreatedApiKey');

export function keyDto(k: ApiKey): z.infer<typeof ApiKeySchema> {
  return {
    id: k.id,
    name: k.name,
    prefix: k.prefix,
    scopes: k.scopes.filter((s): s is (typeof SCOPES)[number] => (SCOPES as readonly string[]).includes(s)),
    createdAt: isoOf(k.createdAt),
    lastUsedAt: isoOrNull(k.lastUsedAt),
    revokedAt: isoOrNull(k.revokedAt),
  };
}

export const list = <T extends z.ZodType>(item: T, name: string) => z.object({ items: z.array(item) }).openapi(name);
/** A list read page by page: `nextCursor` (and a `Link: <…>; rel="next"` header) while more follow. */
export const pagedList = <T extends z.ZodType>(item: T, name: string) =>
  z
    .object({
      items: z.array(item),
      nextCursor: z.string().nullable().openapi({ description: 'Pass as `cursor` for the next page; null on the last page.' }),
    })
    .openapi(name);

export const TenantListSchema = pagedList(TenantSchema, 'TenantList');
export const ApiKeyListSchema = list(ApiKeySchema, 'ApiKeyList');

export { isoOf, isoOrNull };

// ---- data sets ----

const SplitCountsSchema = z.record(z.string(), z.number().int()).openapi({ example: { train: 40, val: 10, test: 0, unassigned: 0, total: 50 } });

export const DatasetSchema = z
  .object({
    id: uuid,
    name: z.string(),
    status: z.enum(['pending', 'processing', 'ready', 'failed']),
    labels: z.array(z.string()),
    classes: z.record(z.string(), SplitCountsSchema).openapi({ description: 'Per label: images in each split.' }),
    imageCount: z.number().int(),
    byteSize: z.number().int(),
    problems: z.array(z.object({ code: z.string(), message: z.string(), file: z.string().optional() })),
    error: z.string().nullable(),
    createdAt: iso,
    updatedAt: iso,
  })
  .openapi('Dataset');
export const DatasetListSchema = pagedList(DatasetSchema, 'DatasetList');
export const CreatedDatasetSchema = DatasetSchema.extend({
  form: z.string().openapi({ description: 'How the upload was read: zip-folders, zip-manifest-csv, zip-manifest-jsonl or jsonl.' }),
  problemCount: z.number().int().openapi({ description: 'All problems found (the dataset keeps the first ones).' }),
}).openapi('CreatedDataset');

export function datasetDto(d: DatasetView): z.infer<typeof DatasetSchema> {
  return {
    ...d,
    classes: d.classes,
    problems: d.problems.map((p) => (p.file === undefined ? { code: p.code, message: p.message } : { code: p.code, message: p.message, file: p.file })),
    createdAt: isoOf(d.createdAt),
    updatedAt: isoOf(d.updatedAt),
  };
}

// ---- jobs ----

export const JobErrorSchema = z
  .object({ code: z.string().openapi({ example: 'storage_error' }), message: z.string() })
  .openapi('JobError');

export const JobSchema = z
  .object({
    id: uuid,
    kind: z.string(),
    status: z.enum(['queued', 'running', 'succeeded', 'failed', 'cancelled']),
    attempts: z.number().int(),
    maxAttempts: z.number().int(),
    progress: z.unknown().openapi({ description: 'Latest progress (for training: epoch, loss, accuracy, …).' }),
    result: z.unknown().openapi({ description: 'For training: adapterId, version, versionId, accuracy.' }),
    error: JobErrorSchema.nullable().openapi({ description: 'Why the last attempt failed: a stable code and a message safe to show.' }),
    cancelRequested: z.boolean(),
    createdAt: iso,
    startedAt: iso.nullable(),
    finishedAt: iso.nullable(),
  })
  .openapi('Job');
export const JobListSchema = pagedList(JobSchema, 'JobList');

export function jobDto(j: JobView): z.infer<typeof JobSchema> {
  return { ...j, createdAt: isoOf(j.createdAt), startedAt: isoOrNull(j.startedAt), finishedAt: isoOrNull(j.finishedAt) };
}

// ---- adapters ----

export const AdapterVersionSchema = z
  .object({
    id: uuid,
    version: z.number().int(),
    source: z.enum(['trained', 'imported']),
    labels: z.array(z.string()),
    spec: z.object({
      rank: z.number().int(),
      beta: z.number().optional(),
      loraBeforeBlocks: z.array(z.number().int()).optional(),
      addAfterBlocks: z.array(z.number().int()).optional(),
      fusionKernel: z.number().int().optional(),
    }),
    metrics: z.record(z.string(), z.unknown()),
    backboneId: z.string(),
    byteSize: z.number().int(),
    datasetId: uuid.nullable(),
    jobId: uuid.nullable(),
    createdAt: iso,
  })
  .openapi('AdapterVersion');
export const AdapterVersionListSchema = list(AdapterVersionSchema, 'AdapterVersionList');

export const AliasSchema = z.object({ alias: z.string(), version: z.number().int() }).openapi('Alias');

export const AdapterSchema = z
  .object({
    id: uuid,
    name: z.string(),
    description: z.string(),
    status: z.enum(['training', 'ready', 'failed', 'empty']).openapi({
      description: 'training: a job is queued or running · ready: has a version · failed: no version and the last job failed · empty',
    }),
    versionCount: z.number().int(),
    latest: AdapterVersionSchema.nullable().openapi({ description: "The version 'latest' points at." }),
    aliases: z.array(AliasSchema),
    lastJob: JobSchema.nullable(),
    createdAt: iso,
    updatedAt: iso,
  })
  .openapi('Adapter');
export const AdapterListSchema = pagedList(AdapterSchema, 'AdapterList');

export function versionDto(v: AdapterVersion): z.infer<typeof AdapterVersionSchema> {
  const s = v.spec as Record<string, unknown>;
  const ints = (x: unknown) => (Array.isArray(x) ? (x as number[]) : undefined);
  return {
    id: v.id,
    version: v.version,
    source: v.source,
    labels: v.spec.labels,
    spec: {
      rank: v.spec.rank,
      beta: typeof s.beta === 'number' ? s.beta : undefined,
      loraBeforeBlocks: ints(s.loraBeforeBlocks),
      addAfterBlocks: ints(s.addAfterBlocks),
      fusionKernel: typeof s.fusionKernel === 'number' ? s.fusionKernel : undefined,
    },
    metrics: v.metrics,
    backboneId: v.backboneId,
    byteSize: v.byteSize,
    datasetId: v.datasetId,
    jobId: v.jobId,
    createdAt: isoOf(v.createdAt),
  };
}

export function adapterDto(v: AdapterView): z.infer<typeof AdapterSchema> {
  return {
    id: v.adapter.id,
    name: v.adapter.name,
    description: v.adapter.description,
    status: v.status,
    versionCount: v.versionCount,
    latest: v.latest === null ? null : versionDto(v.latest),
    aliases: v.aliases,
    lastJob: v.lastJob === null ? null : jobDto(toJobView(v.lastJob)),
    createdAt: isoOf(v.adapter.createdAt),
    updatedAt: isoOf(v.adapter.updatedAt),
  };
}
