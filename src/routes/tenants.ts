/** Tenant administration (admin token): tenants, and the keys of any tenant (to bootstrap one). */
import { z } from '@hono/zod-openapi';
import { createKeyInput, createKey, listKeys, revokeKey } from '../services/keys.js';
import { createTenant, createTenantInput, deleteTenant, getTenant, listTenants } from '../services/tenants.js';
import { auth, defineRoute, errorResponses, newRouter } from './define.js';
import { keyOf, readPage } from './pagination.js';
import {
  ApiKeySchema,
  CreatedKeySchema,
  PageQuery,
  TenantDetailSchema,
  TenantSchema,
  idParam,
  keyDto,
  ApiKeyListSchema,
  TenantListSchema,
  tenantDto,
} from './schemas.js';

const TenantParams = z.object({ tenantId: idParam('tenantId', 'Tenant id') });
const TenantKeyParams = TenantParams.extend({ keyId: idParam('keyId', 'API key id') });
export const CreateKeyBody = createKeyInput.openapi('CreateApiKey');
const json = <T extends z.ZodType>(schema: T) => ({ content: { 'application/json': { schema } }, required: true });

export const createTenantRoute = defineRoute(auth.admin, {
  operationId: 'createTenant',
  method: 'post',
  path: '/v1/tenants',
  tags: ['tenants'],
  summary: 'Create a tenant',
  request: { body: json(createTenantInput.openapi('CreateTenant')) },
  responses: {
    201: { description: 'Created', content: { 'application/json': { schema: TenantSchema } } },
    ...errorResponses(400, 409),
  },
}, { idempotent: 'json' });

export const listTenantsRoute = defineRoute(auth.admin, {
  operationId: 'listTenants',
  method: 'get',
  path: '/v1/tenants',
  tags: ['tenants'],
  summary: 'List tenants (oldest first)',
  request: { query: PageQuery },
  responses: { 200: { description: 'Tenants', content: { 'application/json': { schema: TenantListSchema } } }, ...errorResponses(400) },
});

export const getTenantRoute = defineRoute(auth.admin, {
  operationId: 'getTenant',
  method: 'get',
  path: '/v1/tenants/{tenantId}',
  tags: ['tenants'],
  summary: 'Get a tenant and its usage',
  request: { params: TenantParams },
  responses: { 200: { description: 'The tenant', content: { 'application/json': { schema: TenantDetailSchema } } }, ...errorResponses(404) },
});

export const deleteTenantRoute = defineRoute(auth.admin, {
  operationId: 'deleteTenant',
  method: 'delete',
  path: '/v1/tenants/{tenantId}',
  tags: ['tenants'],
  summary: 'Delete a tenant with all its keys, data sets, adapters, jobs and stored objects',
  description: 'Its keys stop working at once. If deleting its stored objects fails, deleting the tenant again finishes the job.',
  request: { params: TenantParams },
  responses: { 204: { description: 'Deleted' }, ...errorResponses(404) },
});

export const adminCreateKeyRoute = defineRoute(auth.admin, {
  operationId: 'adminCreateKey',
  method: 'post',
  path: '/v1/tenants/{tenantId}/keys',
  tags: ['tenants'],
  summary: "Create an API key for a tenant (e.g. its first 'manage' key)",
  request: { params: TenantParams, body: json(CreateKeyBody) },
  responses: { 201: { description: 'Created; the token is shown only now', content: { 'application/json': { schema: CreatedKeySchema } } }, ...errorResponses(400, 404) },
}, { idempotent: 'json' });

export const adminListKeysRoute = defineRoute(auth.admin, {
  operationId: 'adminListKeys',
  method: 'get',
  path: '/v1/tenants/{tenantId}/keys',
  tags: ['tenants'],
  summary: "List a tenant's API keys",
  request: { params: TenantParams },
  responses: { 200: { description: 'Keys', content: { 'application/json': { schema: ApiKeyListSchema } } }, ...errorResponses(404) },
});

export const adminRevokeKeyRoute = defineRoute(auth.admin, {
  operationId: 'adminRevokeKey',
  method: 'delete',
  path: '/v1/tenants/{tenantId}/keys/{keyId}',
  tags: ['tenants'],
  summary: "Revoke one of a tenant's API keys",
  request: { params: TenantKeyParams },
  responses: { 200: { description: 'Revoked (idempotent)', content: { 'application/json': { schema: ApiKeySchema } } }, ...errorResponses(404) },
});

export function tenantsRouter() {
  const app = newRouter();
  app.openapi(createTenantRoute, async (c) => {
    const tenant = await createTenant({ deps: c.get('deps'), input: c.req.valid('json') });
    c.get('log').info({ tenantId: tenant.id }, 'tenant created');
    return c.json(tenantDto(tenant), 201);
  });
  app.openapi(listTenantsRoute, async (c) => {
    const deps = c.get('deps');
    return c.json(await readPage(c, c.req.valid('query'), (page) => listTenants({ deps, page }), keyOf, tenantDto), 200);
  });
  app.openapi(getTenantRoute, async (c) => {
    const { tenant, usage } = await getTenant({ deps: c.get('deps'), id: c.req.valid('param').tenantId });
    return c.json({ ...tenantDto(tenant), usage }, 200);
  });
  app.openapi(deleteTenantRoute, async (c) => {
    await deleteTenant({ deps: c.get('deps'), id: c.req.valid('param').tenantId });
    return c.body(null, 204);
  });
  app.openapi(adminCreateKeyRoute, async (c) => {
    const deps = c.get('deps');
    const { tenantId } = c.req.valid('param');
    await getTenant({ deps, id: tenantId }); // a deleted tenant gets no new keys
    const created = await createKey({ deps, ctx: { tenantId }, input: c.req.valid('json') });
    return c.json({ key: keyDto(created.key), token: created.token }, 201);
  });
  app.openapi(adminListKeysRoute, async (c) => {
    const deps = c.get('deps');
    const { tenantId } = c.req.valid('param');
    await getTenant({ deps, id: tenantId });
    return c.json({ items: (await listKeys({ deps, ctx: { tenantId } })).map(keyDto) }, 200);
  });
  app.openapi(adminRevokeKeyRoute, async (c) => {
    const { tenantId, keyId } = c.req.valid('param');
    return c.json(keyDto(await revokeKey({ deps: c.get('deps'), ctx: { tenantId }, id: keyId })), 200);
  });
  return app;
}
