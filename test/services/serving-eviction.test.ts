/**
 * Deleting an adapter or a tenant evicts its versions from the serving engine's adapter cache, on a
 * real database (PGlite; PostgreSQL too when DATABASE_URL is set) and a real disk blob store:
 * classify makes them resident, the service's delete makes them leave, and other adapters and
 * tenants stay resident and keep answering.
 */
import fs from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import * as adaptersRepo from '../../src/db/repos/adapters.js';
import * as tenantsRepo from '../../src/db/repos/tenants.js';
import { createLogger } from '../../src/log.js';
import { initBackend, type Backbone } from '../../src/model/index.js';
import { ServingEngine } from '../../src/serve/index.js';
import { deleteAdapter } from '../../src/services/adapters.js';
import { classify } from '../../src/services/classify.js';
import type { ServiceDeps, TenantCtx } from '../../src/services/context.js';
import { deleteTenant } from '../../src/services/tenants.js';
import { VersionResolver } from '../../src/services/version-resolver.js';
import { DiskBlobStore } from '../../src/storage/index.js';
import { rawRgbPng } from '../helpers/datasets.js';
import { dbTargets, makeTempDir, openTestDb, type TestDb } from '../helpers/db.js';
import { tinyBackbone } from '../helpers/tiny-backbone.js';
import { storeAdapters, TINY, variedSpec } from '../serve/engine-helpers.js';

describe.each(dbTargets())('deletes evict from the serving engine: %s', (kind) => {
  let backbone: Backbone;
  let database: TestDb;
  let dir: string;
  let blobs: DiskBlobStore;
  let deps: ServiceDeps & { resolver: VersionResolver; engine: ServingEngine };
  let engine: ServingEngine;
  let png: Buffer;

  /** A tenant's adapter `name` with `versions` published versions (files under the tenant's prefix); their version ids. */
  async function adapterWith(ctx: TenantCtx, name: string, versions: number, seed: number): Promise<string[]> {
    const adapter = await adaptersRepo.create(database.db, ctx.tenantId, { name });
    const files = await storeAdapters(blobs, backbone, versions, {
      prefix: `tenants/${ctx.tenantId}/adapters/${adapter.id}`,
      spec: (i) => variedSpec(seed + i),
      seed,
    });
    const ids: string[] = [];
    for (const f of files) {
      const { version } = await adaptersRepo.publishVersion(database.db, ctx.tenantId, adapter.id, {
        objectKey: f.ref.objectKey,
        spec: { rank: f.spec.rank, beta: f.spec.beta, blocks: f.spec.addAfterBlocks, kernel: f.spec.fusionKernel, labels: f.spec.labels },
        backboneId: backbone.identity,
        byteSize: f.bytes.length,
        source: 'trained',
      });
      ids.push(version.id);
    }
    return ids;
  }

  const ask = (ctx: TenantCtx, adapter: string, version?: number) => classify({ deps, engine, ctx, input: { adapter, version, images: [png] } });
  const resident = () => engine.stats().adapterCache.residentCount;

  beforeAll(async () => {
    await initBackend('wasm');
    backbone = tinyBackbone(TINY);
    database = await openTestDb(kind);
    dir = await makeTempDir('dtl-evict');
    blobs = await DiskBlobStore.open({ root: dir, fsync: false });
    const config = loadConfig({ ADAPTER_CACHE_BYTES: String(1 << 24), BATCH_MAX_WAIT_MS: '0' });
    engine = ServingEngine.fromConfig(config, backbone, blobs);
    deps = { config, log: createLogger('silent'), database, blobs, backbone, resolver: new VersionResolver({ database }), engine };
    png = await rawRgbPng(12, 12, Uint8Array.from({ length: 12 * 12 * 3 }, (_, i) => (i * 37) % 256));
  });

  afterAll(async () => {
    await engine?.close();
    await blobs?.close();
    await database?.close();
    backbone?.dispose();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  it("deleting an adapter evicts every resident version of it, and only those", async () => {
    const alice: TenantCtx = { tenantId: (await tenantsRepo.create(database.db, { name: 'alice' })).id };
    const doomed = await adapterWith(alice, 'doomed', 2, 40);
    const [kept] = await adapterWith(alice, 'kept', 1, 50);
    const before = resident();
    await ask(alice, 'doomed', 1);
    await ask(alice, 'doomed'); // latest = v2
    await ask(alice, 'kept');
    expect(resident()).toBe(before + 3);
    for (const id of [...doomed, kept]) expect(engine.isResident(id)).toBe(true);

    await deleteAdapter({ deps, ctx: alice, ref: 'doomed' });

    expect(resident()).toBe(before + 1);
    for (const id of doomed) expect(engine.isResident(id)).toBe(false);
    expect(engine.isResident(kept)).toBe(true);
    expect(engine.stats().adapterCache.invalidations).toBeGreaterThanOrEqual(2);
    await expect(ask(alice, 'doomed')).rejects.toMatchObject({ code: 'not_found' });
    const still = await ask(alice, 'kept');
    expect(still.results[0].adapter.versionId).toBe(kept);
  });

  it("deleting a tenant evicts every resident version of its adapters; another tenant's stay", async () => {
    const bob: TenantCtx = { tenantId: (await tenantsRepo.create(database.db, { name: 'bob' })).id };
    const carol: TenantCtx = { tenantId: (await tenantsRepo.create(database.db, { name: 'carol' })).id };
    const bobs = [...(await adapterWith(bob, 'one', 1, 60)), ...(await adapterWith(bob, 'two', 2, 70))];
    const [carols] = await adapterWith(carol, 'one', 1, 80);
    const before = resident();
    await ask(bob, 'one');
    await ask(bob, 'two', 1);
    await ask(bob, 'two', 2);
    await ask(carol, 'one');
    expect(resident()).toBe(before + 4);

    await deleteTenant({ deps, id: bob.tenantId });

    expect(resident()).toBe(before + 1);
    for (const id of bobs) expect(engine.isResident(id)).toBe(false);
    expect(engine.isResident(carols)).toBe(true);
    expect((await ask(carol, 'one')).results[0].adapter.versionId).toBe(carols);
  });
});
