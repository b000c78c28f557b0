/** A tenant's own API keys ('manage' scope), and who the calling key is (any key). */
import { z } from '@hono/zod-openapi';
import { createKey, getKey, listKeys, revokeKey } from '../services/keys.js';
import { auth, defineRoute, errorResponses, newRouter } from './define.js';
import { ApiKeySchema, CreatedKeySchema, ScopeSchema, idParam, keyDto, ApiKeyListSchema, uuid } from './schemas.js';
import { CreateKeyBody } from './tenants.js';

const KeyParams = z.object({ keyId: idParam('keyId', 'API key id') });
const MeSchema = z
  .object({ tenantId: uuid, keyId: uuid, prefix: z.string(), scopes: z.array(ScopeSchema) })
  .openapi('Me');

export const meRoute = defineRoute(auth.tenant(), {
  operationId: 'getMe',
  method: 'get',
  path: '/v1/me',
  tags: ['keys'],
  summary: 'The tenant and scopes of the calling API key',
  responses: { 200: { description: 'The caller', content: { 'application/json': { schema: MeSchema } } } },
});

export const createKeyRoute = defineRoute(auth.tenant('manage'), {
  operationId: 'createKey',
  method: 'post',
  path: '/v1/keys',
  tags: ['keys'],
  summary: 'Create an API key for the calling tenant',
  request: { body: { content: { 'application/json': { schema: CreateKeyBody } }, required: true } },
  responses: { 201: { description: 'Created; the token is shown only now', content: { 'application/json': { schema: CreatedKeySchema } } }, ...errorResponses(400) },
}, { idempotent: 'json' });

export const listKeysRoute = defineRoute(auth.tenant('manage'), {
  operationId: 'listKeys',
  method: 'get',
  path: '/v1/keys',
  tags: ['keys'],
  summary: "List the tenant's API keys (never their secrets)",
  responses: { 200: { description: 'Keys', content: { 'application/json': { schema: ApiKeyListSchema } } } },
});

export const getKeyRoute = defineRoute(auth.tenant('manage'), {
  operationId: 'getKey',
  method: 'get',
  path: '/v1/keys/{keyId}',
  tags: ['keys'],
  summary: 'Get one API key (with its last-used time)',
  request: { params: KeyParams },
  responses: { 200: { description: 'The key', content: { 'application/json': { schema: ApiKeySchema } } }, ...errorResponses(404) },
});

export const revokeKeyRoute = defineRoute(auth.tenant('manage'), {
  operationId: 'revokeKey',
  method: 'delete',
  path: '/v1/keys/{keyId}',
  tags: ['keys'],
  summary: 'Revoke an API key (idempotent; a key may revoke itself)',
  request: { params: KeyParams },
  responses: { 200: { description: 'Revoked', content: { 'application/json': { schema: ApiKeySchema } } }, ...errorResponses(404) },
});

export function keysRouter() {
  const app = newRouter();
  app.openapi(meRoute, (c) => {
    const p = c.get('principal');
    return c.json({ tenantId: p.tenantId, keyId: p.keyId, prefix: p.keyPrefix, scopes: [...p.scopes] }, 200);
  });
  app.openapi(createKeyRoute, async (c) => {
    const created = await createKey({ deps: c.get('deps'), ctx: c.get('principal'), input: c.req.valid('json') });
    return c.json({ key: keyDto(created.key), token: created.token }, 201);
  });
  app.openapi(listKeysRoute, async (c) => c.json({ items: (await listKeys({ deps: c.get('deps'), ctx: c.get('principal') })).map(keyDto) }, 200));
  app.openapi(getKeyRoute, async (c) => c.json(keyDto(await getKey({ deps: c.get('deps'), ctx: c.get('principal'), id: c.req.valid('param').keyId })), 200));
  app.openapi(revokeKeyRoute, async (c) =>
    c.json(keyDto(await revokeKey({ deps: c.get('deps'), ctx: c.get('principal'), id: c.req.valid('param').keyId })), 200),
  );
  return app;
}
