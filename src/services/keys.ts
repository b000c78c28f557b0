/**
 * API key verbs of one tenant: create (the only time the whole key is returned), list, revoke.
 * An administrator reaches the same verbs with the tenant id in a TenantCtx of its own making.
 */
import { z } from 'zod';
import * as keysRepo from '../db/repos/keys.js';
import type { ApiKey } from '../db/schema.js';
import { isAppError, validationError } from '../errors.js';
import { nameSchema } from '../text.js';
import { generateKey, scopeSchema, type KeyRevocations, type Scope } from './auth.js';
import type { ServiceDeps, TenantCtx } from './context.js';

export const createKeyInput = z.object({
  name: nameSchema((s) => s.trim().max(100)).default(''),
  scopes: z
    .array(scopeSchema)
    .min(1)
    .refine((a) => new Set(a).size === a.length, 'scopes must be unique'),
});
export type CreateKeyInput = z.input<typeof createKeyInput>;

export interface CreatedKey {
  key: ApiKey;
  /** The full secret key: returned once, never stored. */
  token: string;
}

export async function createKey({ deps, ctx, input }: { deps: Pick<ServiceDeps, 'database'>; ctx: TenantCtx; input: CreateKeyInput }): Promise<CreatedKey> {
  const parsed = createKeyInput.safeParse(input);
  if (!parsed.success) throw validationError(parsed.error);
  const { name, scopes } = parsed.data;
  // A 48-bit prefix collision is rare but possible; one retry makes it a non-event.
  for (let attempt = 0; ; attempt++) {
    const g = generateKey();
    try {
      const key = await keysRepo.create(deps.database.db, ctx.tenantId, { prefix: g.prefix, hash: g.hash, name, scopes: [...scopes] });
      return { key, token: g.token };
    } catch (err) {
      if (attempt < 2 && isAppError(err) && err.code === 'already_exists') continue;
      throw err;
    }
  }
}

export function listKeys({ deps, ctx }: { deps: Pick<ServiceDeps, 'database'>; ctx: TenantCtx }): Promise<ApiKey[]> {
  return keysRepo.list(deps.database.db, ctx.tenantId);
}

export function getKey({ deps, ctx, id }: { deps: Pick<ServiceDeps, 'database'>; ctx: TenantCtx; id: string }): Promise<ApiKey> {
  return keysRepo.get(deps.database.db, ctx.tenantId, id);
}

/**
 * Revoke a key (idempotent). A key may revoke itself — the request that does so still completes,
 * the next one is refused.
 */
export async function revokeKey({
  deps,
  ctx,
  id,
}: {
  deps: Pick<ServiceDeps, 'database'> & { auth?: KeyRevocations };
  ctx: TenantCtx;
  id: string;
}): Promise<ApiKey> {
  const key = await keysRepo.revoke(deps.database.db, ctx.tenantId, id);
  deps.auth?.forgetKey(key.id);
  return key;
}

export function keyScopes(key: ApiKey): Scope[] {
  return key.scopes.filter((s): s is Scope => scopeSchema.safeParse(s).success);
}
