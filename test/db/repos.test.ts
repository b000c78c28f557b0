import { createHash, randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mapDbError } from '../../src/db/errors.js';
import * as adaptersRepo from '../../src/db/repos/adapters.js';
import * as datasetsRepo from '../../src/db/repos/datasets.js';
import * as jobsRepo from '../../src/db/repos/jobs.js';
import * as keysRepo from '../../src/db/repos/keys.js';
import * as tenantsRepo from '../../src/db/repos/tenants.js';
import { adapterVersions, tenants, type AdapterSpec } from '../../src/db/schema.js';
import { AppError } from '../../src/errors.js';
import { dbTargets, openTestDb, type TestDb } from '../helpers/db.js';

const SPEC: AdapterSpec = { rank: 4, beta: 0.5, blocks: [6, 7, 8], labels: ['cat', 'dog'] };
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

/** The AppError code a promise rejects with. */
async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (err instanceof AppError) return err.code;
    throw err;
  }
  throw new Error('expected a rejection');
}

describe.each(dbTargets())('repositories on %s', (kind) => {
  let t: TestDb;
  beforeAll(async () => {
    t = await openTestDb(kind);
  });
  afterAll(async () => {
    await t?.close();
  });
  const newTenant = () => tenantsRepo.create(t.db, { name: `t-${randomUUID()}` });

  describe('tenants', () => {
    it('creates, rejects a duplicate name, and frees the name on delete (revoking its keys)', async () => {
      const a = await tenantsRepo.create(t.db, { name: 'acme' });
      expect(a.id).toMatch(/^[0-9a-f-]{36}$/);
      expect(a.createdAt).toBeInstanceOf(Date);
      const dup = await tenantsRepo.create(t.db, { name: 'acme' }).catch((e: unknown) => e);
      expect(dup).toBeInstanceOf(AppError);
      expect((dup as AppError).code).toBe('already_exists');
      expect((dup as AppError).message).toBe('a tenant with this name already exists');

      await keysRepo.create(t.db, a.id, { prefix: 'acme1', hash: sha('s') });
      await tenantsRepo.remove(t.db, a.id);
      expect(await codeOf(tenantsRepo.get(t.db, a.id))).toBe('not_found');
      expect(await keysRepo.findActiveByPrefix(t.db, 'acme1')).toBeUndefined();
      const again = await tenantsRepo.create(t.db, { name: 'acme' });
      expect(again.id).not.toBe(a.id);
      expect((await tenantsRepo.getByName(t.db, 'acme')).id).toBe(again.id);
      expect((await tenantsRepo.list(t.db)).map((x) => x.id)).toContain(again.id);
    });

    it('a malformed id is not_found, not a database error', async () => {
      expect(await codeOf(tenantsRepo.get(t.db, 'not-a-uuid'))).toBe('not_found');
      expect(await codeOf(adaptersRepo.get(t.db, randomUUID(), "x' or 1=1 --"))).toBe('not_found');
    });
  });

  describe('api keys', () => {
    it('stores prefix + hash, finds active keys by prefix, revokes, and scopes by tenant', async () => {
      const a = await newTenant();
      const b = await newTenant();
      const key = await keysRepo.create(t.db, a.id, { prefix: 'pk_a1', hash: sha('secret'), name: 'ci', scopes: ['read', 'train'] });
      expect(key.scopes).toEqual(['read', 'train']);
      expect(key.lastUsedAt).toBeNull();
      expect(await codeOf(keysRepo.create(t.db, b.id, { prefix: 'pk_a1', hash: sha('x') }))).toBe('already_exists');
      expect(await codeOf(keysRepo.create(t.db, randomUUID(), { prefix: 'pk_zz', hash: sha('x') }))).toBe('not_found');

      const found = await keysRepo.findActiveByPrefix(t.db, 'pk_a1');
      expect(found?.key.hash).toBe(sha('secret'));
      expect(found?.tenant.id).toBe(a.id);
      expect(await codeOf(keysRepo.get(t.db, b.id, key.id))).toBe('not_found');
      expect(await keysRepo.list(t.db, b.id)).toEqual([]);

      await keysRepo.touch(t.db, key.id);
      const used = (await keysRepo.get(t.db, a.id, key.id)).lastUsedAt;
      expect(used).toBeInstanceOf(Date);
      await keysRepo.touch(t.db, key.id); // within the interval: no write
      expect((await keysRepo.get(t.db, a.id, key.id)).lastUsedAt).toEqual(used);

      expect(await codeOf(keysRepo.revoke(t.db, b.id, key.id))).toBe('not_found');
      const revoked = await keysRepo.revoke(t.db, a.id, key.id);
      expect(revoked.revokedAt).toBeInstanceOf(Date);
      expect((await keysRepo.revoke(t.db, a.id, key.id)).revokedAt).toEqual(revoked.revokedAt);
      expect(await keysRepo.findActiveByPrefix(t.db, 'pk_a1')).toBeUndefined();
    });
  });

  describe('datasets', () => {
    it('round-trips jsonb fields, guards status transitions and scopes by tenant', async () => {
      const a = await newTenant();
      const b = await newTenant();
      const d = await datasetsRepo.create(t.db, a.id, { name: 'pets', rawKey: 'raw/1.zip', byteSize: 1234 });
      expect(d.status).toBe('pending');
      expect(d.classes).toEqual({});
      expect(d.problems).toEqual([]);

      const classes = { cat: { train: 40, val: 10 }, dog: { train: 38, val: 9 } };
      const processing = await datasetsRepo.update(t.db, a.id, d.id, { status: 'processing' }, { fromStatus: ['pending'] });
      expect(processing.status).toBe('processing');
      expect(processing.updatedAt.getTime()).toBeGreaterThanOrEqual(d.updatedAt.getTime());
      expect(
        await codeOf(datasetsRepo.update(t.db, a.id, d.id, { status: 'processing' }, { fromStatus: ['pending'] })),
      ).toBe('invalid_state');
      const ready = await datasetsRepo.update(
        t.db,
        a.id,
        d.id,
        { status: 'ready', classes, imageCount: 97, preparedKey: 'prep/1', problems: [{ code: 'skipped', message: 'x', file: 'a.txt' }] },
        { fromStatus: ['processing'] },
      );
      expect(ready.classes).toEqual(classes);
      expect((await datasetsRepo.get(t.db, a.id, d.id)).problems).toEqual([{ code: 'skipped', message: 'x', file: 'a.txt' }]);

      expect(await codeOf(datasetsRepo.get(t.db, b.id, d.id))).toBe('not_found');
      expect(await codeOf(datasetsRepo.update(t.db, b.id, d.id, { name: 'stolen' }))).toBe('not_found');
      expect(await codeOf(datasetsRepo.remove(t.db, b.id, d.id))).toBe('not_found');
      expect((await datasetsRepo.list(t.db, a.id, { status: 'ready' })).map((x) => x.id)).toEqual([d.id]);
      expect(await datasetsRepo.list(t.db, b.id)).toEqual([]);
      expect(await datasetsRepo.countFor(t.db, a.id)).toBe(1);
      expect((await tenantsRepo.usage(t.db, a.id)).bytes).toBe(1234);

      const removed = await datasetsRepo.remove(t.db, a.id, d.id);
      expect(removed.rawKey).toBe('raw/1.zip');
      expect(await codeOf(datasetsRepo.get(t.db, a.id, d.id))).toBe('not_found');
    });
  });

  describe('adapters, versions and aliases', () => {
    const version = (n: number, extra: Partial<adaptersRepo.NewVersion> = {}): adaptersRepo.NewVersion => ({
      objectKey: `adapters/x/v${n}`,
      spec: SPEC,
      metrics: { accuracy: 0.5 + n / 100 },
      backboneId: 'vit-tiny@abc',
      byteSize: 1000 * n,
      source: 'trained',
      ...extra,
    });

    it('names are unique per tenant among live adapters', async () => {
      const a = await newTenant();
      const b = await newTenant();
      await adaptersRepo.create(t.db, a.id, { name: 'pets' });
      expect(await codeOf(adaptersRepo.create(t.db, a.id, { name: 'pets' }))).toBe('already_exists');
      await adaptersRepo.create(t.db, b.id, { name: 'pets' }); // another tenant: fine
      expect(await codeOf(adaptersRepo.create(t.db, randomUUID(), { name: 'pets' }))).toBe('not_found');
    });

    it('publishes numbered versions, moves latest, resolves by name/id, number and alias', async () => {
      const a = await newTenant();
      const b = await newTenant();
      const ad = await adaptersRepo.create(t.db, a.id, { name: 'birds', description: 'd' });
      const v1 = await adaptersRepo.publishVersion(t.db, a.id, ad.id, version(1));
      const v2 = await adaptersRepo.publishVersion(t.db, a.id, ad.id, version(2, { aliases: ['latest', 'prod'] }));
      expect([v1.version.version, v2.version.version]).toEqual([1, 2]);
      expect(v2.version.spec).toEqual(SPEC);
      expect(v2.version.metrics).toEqual({ accuracy: 0.52 });

      expect((await adaptersRepo.resolve(t.db, a.id, 'birds')).version.id).toBe(v2.version.id);
      expect((await adaptersRepo.resolve(t.db, a.id, ad.id, 1)).version.id).toBe(v1.version.id);
      expect((await adaptersRepo.resolve(t.db, a.id, 'birds', '1')).version.id).toBe(v1.version.id);
      await adaptersRepo.setAlias(t.db, a.id, ad.id, 'prod', 1);
      expect((await adaptersRepo.resolve(t.db, a.id, 'birds', 'prod')).version.version).toBe(1);
      expect(await adaptersRepo.listAliases(t.db, a.id, ad.id)).toMatchObject([
        { alias: 'latest', version: 2 },
        { alias: 'prod', version: 1 },
      ]);
      expect(await codeOf(adaptersRepo.setAlias(t.db, a.id, ad.id, 'prod', 9))).toBe('not_found');
      expect(await codeOf(adaptersRepo.setAlias(t.db, a.id, ad.id, '123', 1))).toBe('validation_failed');
      expect(await codeOf(adaptersRepo.resolve(t.db, a.id, 'birds', 'staging'))).toBe('not_found');

      // Tenant b sees none of it.
      expect(await codeOf(adaptersRepo.resolve(t.db, b.id, 'birds'))).toBe('not_found');
      expect(await codeOf(adaptersRepo.resolve(t.db, b.id, ad.id))).toBe('not_found');
      expect(await codeOf(adaptersRepo.publishVersion(t.db, b.id, ad.id, version(3)))).toBe('not_found');
      expect(await codeOf(adaptersRepo.getVersionById(t.db, b.id, v1.version.id))).toBe('not_found');
      expect(await adaptersRepo.listVersions(t.db, b.id, ad.id)).toEqual([]);
      expect(await codeOf(adaptersRepo.setAlias(t.db, b.id, ad.id, 'x', 1))).toBe('not_found');

      await adaptersRepo.deleteAlias(t.db, a.id, ad.id, 'prod');
      expect(await codeOf(adaptersRepo.deleteAlias(t.db, a.id, ad.id, 'prod'))).toBe('not_found');
      expect((await tenantsRepo.usage(t.db, a.id)).bytes).toBe(3000);
    });

    it('a job publishes once: a retried publish returns the first version', async () => {
      const a = await newTenant();
      const ad = await adaptersRepo.create(t.db, a.id, { name: 'retry' });
      const job = await jobsRepo.enqueue(t.db, { kind: 'train', tenantId: a.id });
      const first = await adaptersRepo.publishVersion(t.db, a.id, ad.id, version(1, { jobId: job.id }));
      const second = await adaptersRepo.publishVersion(t.db, a.id, ad.id, version(1, { jobId: job.id, objectKey: 'dup' }));
      expect(first.created).toBe(true);
      expect(second.created).toBe(false);
      expect(second.version.id).toBe(first.version.id);
      expect((await adaptersRepo.findVersionByJob(t.db, a.id, job.id))?.id).toBe(first.version.id);
      expect(await adaptersRepo.listVersions(t.db, a.id, ad.id)).toHaveLength(1);
      expect(await codeOf(adaptersRepo.publishVersion(t.db, a.id, ad.id, version(2, { jobId: randomUUID() })))).toBe(
        'not_found',
      );
    });

    it('concurrent publishes get consecutive numbers', async () => {
      const a = await newTenant();
      const ad = await adaptersRepo.create(t.db, a.id, { name: 'busy' });
      const out = await Promise.all([1, 2, 3, 4, 5].map((n) => adaptersRepo.publishVersion(t.db, a.id, ad.id, version(n))));
      expect(out.map((o) => o.version.version).sort()).toEqual([1, 2, 3, 4, 5]);
      const latest = (await adaptersRepo.resolve(t.db, a.id, 'busy')).version.version;
      expect(latest).toBe(5);
    });

    it('composite foreign keys stop a row from pointing at another tenant, whatever the query', async () => {
      const a = await newTenant();
      const b = await newTenant();
      const ad = await adaptersRepo.create(t.db, a.id, { name: 'iso' });
      const err = await t.db
        .insert(adapterVersions)
        .values({ ...version(1), adapterId: ad.id, tenantId: b.id, version: 1 })
        .catch((e: unknown) => mapDbError(e));
      expect(err).toBeInstanceOf(AppError);
      expect((err as AppError).code).toBe('not_found');
    });

    it('remove hides the adapter, frees its name and returns the blob keys; purge drops the rows', async () => {
      const a = await newTenant();
      const ad = await adaptersRepo.create(t.db, a.id, { name: 'gone' });
      await adaptersRepo.publishVersion(t.db, a.id, ad.id, version(1));
      await adaptersRepo.publishVersion(t.db, a.id, ad.id, version(2));
      expect(await codeOf(adaptersRepo.purge(t.db, a.id, ad.id))).toBe('not_found'); // not removed yet
      const { objectKeys } = await adaptersRepo.remove(t.db, a.id, ad.id);
      expect(objectKeys.sort()).toEqual(['adapters/x/v1', 'adapters/x/v2']);
      expect(await codeOf(adaptersRepo.resolve(t.db, a.id, 'gone'))).toBe('not_found');
      expect(await codeOf(adaptersRepo.getVersion(t.db, a.id, ad.id, 1))).toBe('not_found');
      expect((await tenantsRepo.usage(t.db, a.id)).adapters).toBe(0);
      const again = await adaptersRepo.create(t.db, a.id, { name: 'gone' });
      expect(again.id).not.toBe(ad.id);
      await adaptersRepo.purge(t.db, a.id, ad.id);
      expect(await adaptersRepo.listVersions(t.db, a.id, ad.id)).toEqual([]);
    });
  });

  describe('errors and transactions', () => {
    it('a deleted row still referenced is a conflict; a missing reference is not_found', async () => {
      await t.db.execute(sql`create table if not exists t_parent (id int primary key)`);
      await t.db.execute(sql`create table if not exists t_child (id int primary key, parent int references t_parent(id))`);
      await t.db.execute(sql`insert into t_parent values (1)`);
      await t.db.execute(sql`insert into t_child values (1, 1)`);
      const del = await t.db.execute(sql`delete from t_parent where id = 1`).catch((e: unknown) => mapDbError(e));
      expect((del as AppError).code).toBe('conflict');
      const ins = await t.db.execute(sql`insert into t_child values (2, 99)`).catch((e: unknown) => mapDbError(e));
      expect((ins as AppError).code).toBe('not_found');
      const bad = await t.db.execute(sql`select ${'nope'}::uuid`).catch((e: unknown) => mapDbError(e));
      expect((bad as AppError).code).toBe('validation_failed');
    });

    it('a failed transaction leaves nothing behind; a nested one rolls back to its savepoint', async () => {
      const name = `rollback-${randomUUID()}`;
      await expect(
        t.db.transaction(async (tx) => {
          await tx.insert(tenants).values({ name });
          throw new Error('boom');
        }),
      ).rejects.toThrow('boom');
      expect(await codeOf(tenantsRepo.getByName(t.db, name))).toBe('not_found');

      await t.db.transaction(async (tx) => {
        await tx.insert(tenants).values({ name: `${name}-outer` });
        await tx
          .transaction(async (inner) => {
            await inner.insert(tenants).values({ name: `${name}-inner` });
            throw new Error('inner');
          })
          .catch(() => {});
      });
      await tenantsRepo.getByName(t.db, `${name}-outer`);
      expect(await codeOf(tenantsRepo.getByName(t.db, `${name}-inner`))).toBe('not_found');
    });

    it('a repository call inside a transaction commits or rolls back with it', async () => {
      const a = await newTenant();
      await t.db
        .transaction(async (tx) => {
          await adaptersRepo.create(tx, a.id, { name: 'tx-adapter' });
          throw new Error('abort');
        })
        .catch(() => {});
      expect(await adaptersRepo.list(t.db, a.id)).toEqual([]);
    });
  });
});
