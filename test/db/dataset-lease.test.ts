/**
 * Issue 11, item 11, at the repository (PGlite; PostgreSQL too when DATABASE_URL is set): a data
 * set being uploaded holds a lease on the database's clock; renewing keeps it 'processing', a
 * lapsed one is failed by expireLeases (for one tenant or all) and can no longer be renewed.
 */
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as datasetsRepo from '../../src/db/repos/datasets.js';
import * as tenantsRepo from '../../src/db/repos/tenants.js';
import { dbTargets, openTestDb, type TestDb } from '../helpers/db.js';

describe.each(dbTargets())('data set leases on %s', (kind) => {
  let db: TestDb;
  beforeAll(async () => {
    db = await openTestDb(kind);
  });
  afterAll(() => db?.close());

  /** Moves a lease into the past (or future) on the database's own clock. */
  const shift = (id: string, interval: string) => db.db.execute(sql`update datasets set lease_until = now() + ${interval}::interval where id = ${id}`);

  it('renew keeps a data set processing; a lapsed lease fails it for readers, once, with a safe message', async () => {
    const t = (await tenantsRepo.create(db.db, { name: `lease-${kind}` })).id;
    const other = (await tenantsRepo.create(db.db, { name: `lease-other-${kind}` })).id;
    const live = await datasetsRepo.create(db.db, t, { name: 'live', status: 'processing', leaseMs: 60_000 });
    const dead = await datasetsRepo.create(db.db, t, { name: 'dead', status: 'processing', leaseMs: 60_000, byteSize: 123 });
    const theirs = await datasetsRepo.create(db.db, other, { name: 'theirs', status: 'processing', leaseMs: 60_000 });
    const legacy = await datasetsRepo.create(db.db, t, { name: 'no lease', status: 'processing' });
    expect(live.leaseUntil!.getTime()).toBeGreaterThan(Date.now() + 30_000);
    expect(legacy.leaseUntil).toBeNull();

    expect(await datasetsRepo.expireLeases(db.db, t)).toEqual([]);
    await shift(dead.id, '-1 second');
    await shift(theirs.id, '-1 second');
    await shift(live.id, '-1 second');
    expect(await datasetsRepo.renewLease(db.db, t, live.id, 60_000)).toBe(true); // renewed in time: lives on

    expect(await datasetsRepo.expireLeases(db.db, t)).toEqual([{ tenantId: t, id: dead.id }]);
    expect(await datasetsRepo.get(db.db, t, dead.id)).toMatchObject({ status: 'failed', error: datasetsRepo.INTERRUPTED, byteSize: 0, leaseUntil: null });
    expect((await datasetsRepo.get(db.db, t, live.id)).status).toBe('processing');
    expect((await datasetsRepo.get(db.db, t, legacy.id)).status).toBe('processing');
    expect((await datasetsRepo.get(db.db, other, theirs.id)).status).toBe('processing'); // another tenant's read
    expect(await datasetsRepo.expireLeases(db.db, t)).toEqual([]);

    // The uploading process, back too late, cannot take it back.
    expect(await datasetsRepo.renewLease(db.db, t, dead.id, 60_000)).toBe(false);
    await expect(datasetsRepo.update(db.db, t, dead.id, { status: 'ready' }, { fromStatus: ['processing'] })).rejects.toMatchObject({ code: 'invalid_state' });

    // Every tenant at once (the maintenance sweep).
    expect(await datasetsRepo.expireLeases(db.db)).toEqual([{ tenantId: other, id: theirs.id }]);
    expect((await datasetsRepo.get(db.db, other, theirs.id)).status).toBe('failed');
  });
});
