/**
 * VersionResolver on real databases. On PGlite (this process is the only writer) answers are
 * remembered until any write; every kind of change that moves an answer is seen by the next call;
 * a write racing a lookup leaves nothing remembered. On PostgreSQL (other processes write) nothing
 * is remembered at all.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as adaptersRepo from '../../src/db/repos/adapters.js';
import * as tenantsRepo from '../../src/db/repos/tenants.js';
import { VersionResolver } from '../../src/services/version-resolver.js';
import { dbTargets, openTestDb, type TestDb } from '../helpers/db.js';

const spec = { kind: 'dtl', rank: 2, beta: 100, readBlocks: [0, 1], addBlocks: [1], labels: ['a', 'b'] } as const;

describe.each(dbTargets())('VersionResolver on %s', (kind) => {
  let db: TestDb;
  let tenantId: string;
  let otherTenant: string;
  let n = 0;

  beforeAll(async () => {
    db = await openTestDb(kind);
    tenantId = (await tenantsRepo.create(db.db, { name: `resolver-${kind}` })).id;
    otherTenant = (await tenantsRepo.create(db.db, { name: `resolver-other-${kind}` })).id;
  });
  afterAll(async () => {
    await db?.close();
  });

  async function adapterWithVersion(name: string) {
    const adapter = await adaptersRepo.create(db.db, tenantId, { name });
    await publish(adapter.id);
    return adapter;
  }
  function publish(adapterId: string, aliases?: string[]) {
    return adaptersRepo.publishVersion(db.db, tenantId, adapterId, {
      objectKey: `tenants/${tenantId}/adapters/${adapterId}/${n++}.safetensors`,
      spec: spec as never,
      backboneId: 'b'.repeat(64),
      byteSize: 10,
      source: 'trained',
      aliases,
    });
  }

  it('answers repeats from memory only where this process is the sole writer', async () => {
    const r = new VersionResolver({ database: db });
    const a = await adapterWithVersion('repeat');
    for (let i = 0; i < 5; i++) expect((await r.resolve(tenantId, { adapter: 'repeat' })).version.version).toBe(1);
    expect((await r.resolve(tenantId, { adapter: a.id, version: 1 })).adapter.id).toBe(a.id);
    expect(r.stats()).toEqual(kind === 'pglite' ? { hits: 4, misses: 2, entries: 2 } : { hits: 0, misses: 0, entries: 0 });
  });

  it('sees a new version, an alias move, an alias removal and a deletion on the next call', async () => {
    const r = new VersionResolver({ database: db });
    const a = await adapterWithVersion('moving');
    expect((await r.resolve(tenantId, { adapter: 'moving' })).version.version).toBe(1);
    await adaptersRepo.setAlias(db.db, tenantId, a.id, 'stable', 1);
    expect((await r.resolve(tenantId, { adapter: 'moving', alias: 'stable' })).version.version).toBe(1);

    await publish(a.id);
    expect((await r.resolve(tenantId, { adapter: 'moving' })).version.version).toBe(2);
    await adaptersRepo.setAlias(db.db, tenantId, a.id, 'stable', 2);
    expect((await r.resolve(tenantId, { adapter: 'moving', alias: 'stable' })).version.version).toBe(2);
    await adaptersRepo.deleteAlias(db.db, tenantId, a.id, 'stable');
    await expect(r.resolve(tenantId, { adapter: 'moving', alias: 'stable' })).rejects.toMatchObject({ code: 'not_found' });

    expect((await r.resolve(tenantId, { adapter: 'moving', version: '2' })).version.version).toBe(2);
    await adaptersRepo.remove(db.db, tenantId, a.id);
    await expect(r.resolve(tenantId, { adapter: 'moving', version: '2' })).rejects.toMatchObject({ code: 'not_found' });
    await expect(r.resolve(tenantId, { adapter: a.id })).rejects.toMatchObject({ code: 'not_found' });
  });

  it('keeps tenants apart: the same name under another tenant is not found, not served from memory', async () => {
    const r = new VersionResolver({ database: db });
    await adapterWithVersion('mine');
    expect((await r.resolve(tenantId, { adapter: 'mine' })).adapter.tenantId).toBe(tenantId);
    await expect(r.resolve(otherTenant, { adapter: 'mine' })).rejects.toMatchObject({ code: 'not_found' });
  });

  it('remembers nothing read while a write was issued', async () => {
    const r = new VersionResolver({ database: db });
    const a = await adapterWithVersion('racing');
    const [seen] = await Promise.all([r.resolve(tenantId, { adapter: 'racing' }), publish(a.id)]);
    expect([1, 2]).toContain(seen.version.version);
    expect(r.stats().entries).toBe(0);
    expect((await r.resolve(tenantId, { adapter: 'racing' })).version.version).toBe(2);
  });
});
