/**
 * Response and shared request shapes of the public API (zod → OpenAPI components), and the
 * mappers from database rows to them. Timestamps are ISO 8601 strings; ids are UUIDs.
 */
import { z } from '@hono/zod-openapi';
import type { ApiKey, Tenant } from '../db/schema.js';
import { ERROR_CODES, type ErrorCode } from '../errors.js';
import { SCOPES } from '../services/auth.js';

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
  z.string().max(200).openapi({ param: { name, in: 'path' }, description, example: '0b5e3f0e-8d1c-4a6e-9f0f-2d7c1f9a2b34' });

export const PageQuery = z.object({
  limit: z.coerce.number().int().min(1).max(1000).default(100).openapi({ description: 'At most this many items.' }),
  offset: z.coerce.number().int().min(0).default(0),
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

export const TenantListSchema = list(TenantSchema, 'TenantList');
export const ApiKeyListSchema = list(ApiKeySchema, 'ApiKeyList');

export { isoOf, isoOrNull };
