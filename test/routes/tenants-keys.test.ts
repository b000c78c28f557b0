import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, ADMIN_TOKEN, type Harness } from './harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

describe('tenants (admin)', () => {
  it('creates, lists, gets with usage, rejects duplicates and bad names', async () => {
    const created = await h.admin('POST', '/v1/tenants', { name: 'acme' });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ name: 'acme', id: expect.any(String), createdAt: expect.any(String) });
    const dup = await h.admin('POST', '/v1/tenants', { name: 'acme' });
    expect(dup.status).toBe(409);
    expect(dup.body.error.code).toBe('already_exists');
    const bad = await h.admin('POST', '/v1/tenants', { name: '' });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('validation_failed');
    const listed = await h.admin('GET', '/v1/tenants');
    expect(listed.body.items.map((t: { name: string }) => t.name)).toContain('acme');
    const got = await h.admin('GET', `/v1/tenants/${created.body.id}`);
    expect(got.status).toBe(200);
    expect(got.body.usage).toEqual({ datasets: 0, adapters: 0, bytes: 0 });
    const missing = await h.admin('GET', '/v1/tenants/00000000-0000-4000-8000-000000000000');
    expect(missing.status).toBe(404);
    expect(missing.body.error).toMatchObject({ code: 'not_found', requestId: expect.any(String) });
  });

  it('refuses without the admin token or with a wrong one', async () => {
    expect((await h.call('GET', '/v1/tenants')).status).toBe(401);
    const wrong = await h.call('GET', '/v1/tenants', { token: `${ADMIN_TOKEN}x` });
    expect(wrong.status).toBe(401);
    expect(wrong.body.error.code).toBe('unauthenticated');
  });

  it('deletes a tenant: its keys stop working at once and its name is free again', async () => {
    const t = await h.tenant('doomed');
    expect((await h.call('GET', '/v1/me', { token: t.token })).status).toBe(200);
    expect((await h.admin('DELETE', `/v1/tenants/${t.id}`)).status).toBe(204);
    expect((await h.call('GET', '/v1/me', { token: t.token })).status).toBe(401);
    expect((await h.admin('GET', `/v1/tenants/${t.id}`)).status).toBe(404);
    expect((await h.admin('DELETE', `/v1/tenants/${t.id}`)).status).toBe(404);
    expect((await h.admin('POST', '/v1/tenants', { name: 'doomed' })).status).toBe(201);
  });
});

describe('keys', () => {
  it('admin bootstraps a key; the key is shown once and stored hashed', async () => {
    const t = await h.admin('POST', '/v1/tenants', { name: 'keys-co' });
    const k = await h.admin('POST', `/v1/tenants/${t.body.id}/keys`, { name: 'root', scopes: ['manage'] });
    expect(k.status).toBe(201);
    expect(k.body.token).toMatch(/^dtl_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
    expect(k.body.token.startsWith(`dtl_${k.body.key.prefix}_`)).toBe(true);
    const listed = await h.admin('GET', `/v1/tenants/${t.body.id}/keys`);
    expect(listed.text).not.toContain(k.body.token.slice(18));
    const me = await h.call('GET', '/v1/me', { token: k.body.token });
    expect(me.body).toEqual({ tenantId: t.body.id, keyId: k.body.key.id, prefix: k.body.key.prefix, scopes: ['manage'] });
    const badScope = await h.admin('POST', `/v1/tenants/${t.body.id}/keys`, { scopes: ['root'] });
    expect(badScope.status).toBe(400);
    const noScope = await h.admin('POST', `/v1/tenants/${t.body.id}/keys`, { scopes: [] });
    expect(noScope.status).toBe(400);
    const ghost = await h.admin('POST', '/v1/tenants/00000000-0000-4000-8000-000000000000/keys', { scopes: ['manage'] });
    expect(ghost.status).toBe(404);
    expect((await h.admin('GET', '/v1/tenants/00000000-0000-4000-8000-000000000000/keys')).status).toBe(404);
    // The admin can revoke any tenant's key (e.g. a leaked one); revoking twice keeps the first time.
    const revoked = await h.admin('DELETE', `/v1/tenants/${t.body.id}/keys/${k.body.key.id}`);
    expect(revoked.status).toBe(200);
    expect(revoked.body.revokedAt).not.toBeNull();
    expect((await h.admin('DELETE', `/v1/tenants/${t.body.id}/keys/${k.body.key.id}`)).body.revokedAt).toBe(revoked.body.revokedAt);
    expect((await h.call('GET', '/v1/me', { token: k.body.token })).status).toBe(401);
    expect((await h.admin('DELETE', `/v1/tenants/${t.body.id}/keys/00000000-0000-4000-8000-000000000000`)).status).toBe(404);
  });

  it('a manage key creates, lists, gets and revokes keys; last use is recorded', async () => {
    const t = await h.tenant('manage-co', ['manage']);
    const c = await h.call('POST', '/v1/keys', { token: t.token, body: { name: 'ci', scopes: ['classify'] } });
    expect(c.status).toBe(201);
    const dupScopes = await h.call('POST', '/v1/keys', { token: t.token, body: { scopes: ['classify', 'classify'] } });
    expect([dupScopes.status, dupScopes.body.error.code]).toEqual([400, 'validation_failed']);
    expect((await h.call('GET', '/v1/keys/not-a-key', { token: t.token })).status).toBe(404);
    const classify = c.body.token as string;
    expect((await h.call('GET', '/v1/me', { token: classify })).body.scopes).toEqual(['classify']);
    // Last use is written without delaying the request: poll for it.
    await expect
      .poll(async () => (await h.call('GET', `/v1/keys/${c.body.key.id}`, { token: t.token })).body.lastUsedAt, { timeout: 5000 })
      .not.toBeNull();
    const list = await h.call('GET', '/v1/keys', { token: t.token });
    expect(list.body.items).toHaveLength(2);
    const revoked = await h.call('DELETE', `/v1/keys/${c.body.key.id}`, { token: t.token });
    expect(revoked.status).toBe(200);
    expect(revoked.body.revokedAt).not.toBeNull();
    expect((await h.call('GET', '/v1/me', { token: classify })).status).toBe(401);
    // A classify key cannot manage keys.
    const c2 = await h.call('POST', '/v1/keys', { token: t.token, body: { scopes: ['classify'] } });
    const forbidden = await h.call('GET', '/v1/keys', { token: c2.body.token });
    expect(forbidden.status).toBe(403);
    expect(forbidden.body.error.code).toBe('forbidden');
  });

  it('rejects malformed and unknown keys alike', async () => {
    for (const token of ['nope', 'dtl_000000000000_' + 'a'.repeat(43), 'dtl_zz']) {
      const r = await h.call('GET', '/v1/me', { token });
      expect(r.status).toBe(401);
      expect(r.body.error.code).toBe('unauthenticated');
    }
  });
});
