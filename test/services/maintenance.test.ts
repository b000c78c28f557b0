/**
 * The maintenance sweep on real databases (PGlite; PostgreSQL too when DATABASE_URL is set) and
 * real blob stores (disk, s3rver): what interrupted requests leave behind is cleaned up once it is
 * older than the grace period, everything a row names stays, and a second sweep finds nothing.
 */
import fs from 'node:fs/promises';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as adaptersRepo from '../../src/db/repos/adapters.js';
import * as datasetsRepo from '../../src/db/repos/datasets.js';
import * as tenantsRepo from '../../src/db/repos/tenants.js';
import { createLogger } from '../../src/log.js';
import { sweep, Sweeper } from '../../src/services/maintenance.js';
import { DiskBlobStore, listAll, type BlobStore } from '../../src/storage/index.js';
import { dbTargets, makeTempDir, openTestDb, type TestDb } from '../helpers/db.js';
import { startS3 } from '../helpers/s3.js';

const HOUR = 3_600_000;
const spec = { kind: 'dtl', rank: 2, beta: 100, readBlocks: [0], addBlocks: [0], labels: ['a', 'b'] } as never;
const log = createLogger('silent');

const stores: Array<[string, () => Promise<{ store: BlobStore; stop: () => Promise<void> }>]> = [
  [
    'disk',
    async () => {
      const root = await makeTempDir('dtl-sweep');
      const store = await DiskBlobStore.open({ root, fsync: false });
      return { store, stop: async () => { await store.close(); await fs.rm(root, { recursive: true, force: true }); } };
    },
  ],
  [
    's3rver',
    async () => {
      const s3 = await startS3();
      return { store: s3.store, stop: () => s3.stop() };
    },
  ],
];
const targets = dbTargets().flatMap((db) => stores.map(([name, open]) => ({ label: `${db} + ${name}`, db, open })));

describe.each(targets)('maintenance sweep: $label', ({ db: kind, open }) => {
  let db: TestDb;
  let blobs: BlobStore;
  let stop: () => Promise<void>;
  beforeAll(async () => {
    db = await openTestDb(kind);
    ({ store: blobs, stop } = await open());
  });
  afterAll(async () => {
    await stop?.();
    await db?.close();
  });

  const put = (key: string) => blobs.putBuffer(key, Buffer.from(key)).then(() => key);

  it('removes only what no finished row names, once it is older than the grace period', async () => {
    const deps = { database: db, blobs, log };
    const t = (await tenantsRepo.create(db.db, { name: `sweep-${kind}` })).id;
    const root = `tenants/${t}`;

    // Kept: a ready data set and a live adapter version.
    const ready = await datasetsRepo.create(db.db, t, { name: 'ready', status: 'processing' });
    const readyKeys = [await put(`${root}/datasets/${ready.id}/upload`), await put(`${root}/datasets/${ready.id}/prepared.bin`)];
    await datasetsRepo.update(db.db, t, ready.id, { status: 'ready', rawKey: readyKeys[0], preparedKey: readyKeys[1] });
    const live = await adaptersRepo.create(db.db, t, { name: 'live' });
    const liveKey = await put(`${root}/adapters/${live.id}/v1.safetensors`);
    await adaptersRepo.publishVersion(db.db, t, live.id, { objectKey: liveKey, spec, backboneId: 'b', byteSize: 1, source: 'trained' });

    // Left behind: an upload that died mid-way, a delete that died after hiding the adapter, a
    // publish that died between blob and row, blobs of a data set whose row is gone, and a
    // tenant deleted but never purged.
    const stuck = await datasetsRepo.create(db.db, t, { name: 'stuck', status: 'processing' });
    const stuckKey = await put(`${root}/datasets/${stuck.id}/upload`);
    const gone = await adaptersRepo.create(db.db, t, { name: 'gone' });
    const goneKey = await put(`${root}/adapters/${gone.id}/v1.safetensors`);
    await adaptersRepo.publishVersion(db.db, t, gone.id, { objectKey: goneKey, spec, backboneId: 'b', byteSize: 1, source: 'trained' });
    await adaptersRepo.remove(db.db, t, gone.id);
    const orphan = await put(`${root}/adapters/${live.id}/v2-crashed.safetensors`);
    const strayDataset = await put(`${root}/datasets/00000000-0000-4000-8000-000000000000/upload`);
    // Still being written (young row): its first blob is not named yet, and must survive.
    const writing = await datasetsRepo.create(db.db, t, { name: 'writing', status: 'processing' });
    const writingKey = await put(`${root}/datasets/${writing.id}/upload`);
    const doomed = (await tenantsRepo.create(db.db, { name: `sweep-doomed-${kind}` })).id;
    const doomedKey = await put(`tenants/${doomed}/datasets/x/upload`);
    await tenantsRepo.remove(db.db, doomed);

    const everything = [...readyKeys, liveKey, stuckKey, goneKey, orphan, strayDataset, writingKey, doomedKey].sort();
    const listed = async () => (await listAll(blobs, 'tenants/')).map((e) => e.key).filter((k) => k.startsWith(root) || k.startsWith(`tenants/${doomed}`)).sort();

    // Everything is young: nothing is touched.
    expect(await sweep({ deps, graceMs: HOUR })).toEqual({ tenantsPurged: 0, adaptersPurged: 0, datasetsFailed: 0, datasetsRemoved: 0, orphanBlobsDeleted: 0, idempotencyKeysExpired: 0 });
    expect(await listed()).toEqual(everything);

    // Two hours on, it is all old enough — but 'writing' was touched a moment ago (its upload goes on).
    await datasetsRepo.update(db.db, t, writing.id, { byteSize: 1 });
    await db.db.execute(sql`update datasets set updated_at = now() + interval '2 hours' where id = ${writing.id}`);
    const later = new Date(Date.now() + 2 * HOUR);
    const report = await sweep({ deps, graceMs: HOUR, now: later });
    expect(report).toEqual({ tenantsPurged: 1, adaptersPurged: 1, datasetsFailed: 0, datasetsRemoved: 1, orphanBlobsDeleted: 2, idempotencyKeysExpired: 0 });
    expect(await listed()).toEqual([...readyKeys, liveKey, writingKey].sort());
    expect((await datasetsRepo.list(db.db, t)).map((d) => d.name).sort()).toEqual(['ready', 'writing']);
    expect((await adaptersRepo.list(db.db, t)).map((a) => a.name)).toEqual(['live']);
    expect((await adaptersRepo.resolve(db.db, t, 'live')).version.objectKey).toBe(liveKey);
    expect((await blobs.getBuffer(liveKey)).toString()).toBe(liveKey);
    await expect(tenantsRepo.get(db.db, doomed)).rejects.toMatchObject({ code: 'not_found' });

    // Idempotent.
    expect(await sweep({ deps, graceMs: HOUR, now: later })).toEqual({ tenantsPurged: 0, adaptersPurged: 0, datasetsFailed: 0, datasetsRemoved: 0, orphanBlobsDeleted: 0, idempotencyKeysExpired: 0 });
  });

  it('fails a data set whose upload lease lapsed (its blobs go as orphans) and spares one whose lease is held, however old', async () => {
    const deps = { database: db, blobs, log };
    const t = (await tenantsRepo.create(db.db, { name: `lease-${kind}` })).id;
    const crashed = await datasetsRepo.create(db.db, t, { name: 'crashed', status: 'processing', leaseMs: 1 });
    const crashedKey = await put(`tenants/${t}/datasets/${crashed.id}/upload`);
    const held = await datasetsRepo.create(db.db, t, { name: 'held', status: 'processing', leaseMs: HOUR });
    const heldKey = await put(`tenants/${t}/datasets/${held.id}/upload`);
    await db.db.execute(sql`update datasets set updated_at = now() - interval '2 hours' where id = ${held.id}`);
    await new Promise((r) => setTimeout(r, 20));

    // Young blobs: the row fails at once, its blob waits for the grace period.
    expect(await sweep({ deps, graceMs: HOUR })).toMatchObject({ datasetsFailed: 1, datasetsRemoved: 0, orphanBlobsDeleted: 0, idempotencyKeysExpired: 0 });
    expect(await datasetsRepo.get(db.db, t, crashed.id)).toMatchObject({ status: 'failed', error: datasetsRepo.INTERRUPTED, byteSize: 0, leaseUntil: null });
    const later = new Date(Date.now() + 2 * HOUR);
    expect(await sweep({ deps, graceMs: HOUR, now: later })).toMatchObject({ datasetsFailed: 0, datasetsRemoved: 0, orphanBlobsDeleted: 1 });
    expect(await blobs.head(crashedKey)).toBeNull();
    expect(await blobs.head(heldKey)).not.toBeNull();
    expect((await datasetsRepo.get(db.db, t, held.id)).status).toBe('processing');
  });

  it('removes expired Idempotency-Key records and keeps live ones', async () => {
    const deps = { database: db, blobs, log };
    await db.db.execute(sql`insert into idempotency_keys (scope, key, fingerprint, status, expires_at) values
      ('admin', ${`old-${kind}`}, 'f', 201, now() - interval '1 minute'), ('admin', ${`live-${kind}`}, 'f', 201, now() + interval '1 hour')`);
    expect(await sweep({ deps, graceMs: HOUR })).toMatchObject({ idempotencyKeysExpired: 1 });
    const left = await db.db.execute(sql`select key from idempotency_keys where scope = 'admin' and key like ${`%-${kind}`}`);
    const rows = Array.isArray(left) ? left : (left as unknown as { rows: unknown[] }).rows;
    expect(rows).toEqual([{ key: `live-${kind}` }]);
  });

  it('the Sweeper runs the sweep on its timer until stopped', async () => {
    const t = (await tenantsRepo.create(db.db, { name: `sweeper-${kind}` })).id;
    const first = await put(`tenants/${t}/adapters/x/first.safetensors`);
    const sweeper = new Sweeper({ database: db, blobs, log }, { intervalMs: 20, graceMs: 0, firstAfterMs: 0 });
    sweeper.start();
    try {
      for (let i = 0; (await blobs.head(first)) !== null; i++) {
        expect(i).toBeLessThan(200);
        await new Promise((r) => setTimeout(r, 20));
      }
      const second = await put(`tenants/${t}/adapters/x/second.safetensors`); // swept by a later round
      for (let i = 0; (await blobs.head(second)) !== null; i++) {
        expect(i).toBeLessThan(200);
        await new Promise((r) => setTimeout(r, 20));
      }
    } finally {
      await sweeper.stop();
    }
    const third = await put(`tenants/${t}/adapters/x/third.safetensors`);
    await new Promise((r) => setTimeout(r, 100));
    expect(await blobs.head(third)).not.toBeNull(); // stopped: no more rounds
  });
});
