/**
 * The authenticator's verified-key cache on a real database (PGlite; PostgreSQL too when
 * DATABASE_URL is set): hits skip the lookup but never the secret check, revocations through this
 * process apply at once, revocations made elsewhere (straight in the database, as another replica
 * would) apply when the entry expires, and TTL 0 looks up every time.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as keysRepo from '../../src/db/repos/keys.js';
import * as tenantsRepo from '../../src/db/repos/tenants.js';
import { createLogger } from '../../src/log.js';
import { Authenticator, generateKey } from '../../src/services/auth.js';
import { revokeKey } from '../../src/services/keys.js';
import { deleteTenant } from '../../src/services/tenants.js';
import { DiskBlobStore } from '../../src/storage/index.js';
import { dbTargets, makeTempDir, openTestDb, type TestDb } from '../helpers/db.js';

const log = createLogger('silent');

describe.each(dbTargets())('Authenticator cache on %s', (kind) => {
  let db: TestDb;
  let blobs: DiskBlobStore;
  let clock = 1_000_000;
  const now = () => clock;

  beforeAll(async () => {
    db = await openTestDb(kind);
    blobs = await DiskBlobStore.open({ root: await makeTempDir('dtl-auth'), fsync: false });
  });
  afterAll(async () => {
    await blobs?.close();
    await db?.close();
  });

  let n = 0;
  async function newKey(tenantId?: string) {
    const tenant = tenantId ?? (await tenantsRepo.create(db.db, { name: `auth-${kind}-${n++}` })).id;
    const g = generateKey();
    const key = await keysRepo.create(db.db, tenant, { prefix: g.prefix, hash: g.hash, scopes: ['classify'] });
    return { tenantId: tenant, keyId: key.id, token: g.token };
  }

  it('trusts a verified key for the TTL: a revocation made elsewhere applies when the entry expires', async () => {
    const auth = new Authenticator({ database: db, log }, { ttlMs: 5_000, now });
    const k = await newKey();
    expect(await auth.authenticate(k.token, 'r1')).toMatchObject({ tenantId: k.tenantId, keyId: k.keyId, scopes: ['classify'], requestId: 'r1' });
    await keysRepo.revoke(db.db, k.tenantId, k.keyId); // another replica revokes
    clock += 4_000;
    expect((await auth.authenticate(k.token, 'r2')).requestId).toBe('r2'); // served from memory
    clock += 1_001;
    await expect(auth.authenticate(k.token)).rejects.toMatchObject({ code: 'unauthenticated' });
    clock += 10_000;
    await expect(auth.authenticate(k.token)).rejects.toMatchObject({ code: 'unauthenticated' }); // refusals are not cached as successes
  });

  it('checks the secret on every hit: a right prefix with a wrong secret is refused', async () => {
    const auth = new Authenticator({ database: db, log }, { ttlMs: 60_000, now });
    const k = await newKey();
    await auth.authenticate(k.token);
    const forged = `${k.token.slice(0, -4)}${k.token.endsWith('AAAA') ? 'BBBB' : 'AAAA'}`;
    await expect(auth.authenticate(forged)).rejects.toMatchObject({ code: 'unauthenticated' });
    expect((await auth.authenticate(k.token)).keyId).toBe(k.keyId);
  });

  it('applies a revocation or a tenant deletion made through this process at once', async () => {
    const auth = new Authenticator({ database: db, log }, { ttlMs: 60_000, now });
    const a = await newKey();
    const b = await newKey(a.tenantId);
    const other = await newKey();
    for (const k of [a, b, other]) await auth.authenticate(k.token);

    await revokeKey({ deps: { database: db, auth }, ctx: { tenantId: a.tenantId }, id: a.keyId });
    await expect(auth.authenticate(a.token)).rejects.toMatchObject({ code: 'unauthenticated' });
    expect((await auth.authenticate(b.token)).keyId).toBe(b.keyId);

    await deleteTenant({ deps: { database: db, blobs, log, auth }, id: a.tenantId });
    await expect(auth.authenticate(b.token)).rejects.toMatchObject({ code: 'unauthenticated' });
    expect((await auth.authenticate(other.token)).tenantId).toBe(other.tenantId);
  });

  it('with TTL 0 looks the key up on every request', async () => {
    const auth = new Authenticator({ database: db, log }, { ttlMs: 0, now });
    const k = await newKey();
    await auth.authenticate(k.token);
    await keysRepo.revoke(db.db, k.tenantId, k.keyId);
    await expect(auth.authenticate(k.token)).rejects.toMatchObject({ code: 'unauthenticated' });
  });
});
