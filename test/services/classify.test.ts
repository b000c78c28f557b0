/**
 * Classify verbs end to end on a real database (PGlite; PostgreSQL too when DATABASE_URL is set)
 * and a real blob store (disk and s3rver): resolution by id / name / version / alias, tenant
 * isolation, new versions and alias moves seen by the next request, single-flight loads,
 * top-k / threshold, typed errors for bad input.
 */
import fs from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import * as adaptersRepo from '../../src/db/repos/adapters.js';
import * as tenantsRepo from '../../src/db/repos/tenants.js';
import type { AdapterSpec as StoredSpec } from '../../src/db/schema.js';
import { createLogger } from '../../src/log.js';
import { initBackend, preprocessImage, type AdapterSpec, type Backbone } from '../../src/model/index.js';
import { ServingEngine } from '../../src/serve/index.js';
import { classify, classifyFanOut } from '../../src/services/classify.js';
import type { ServiceDeps, TenantCtx } from '../../src/services/context.js';
import { VersionResolver } from '../../src/services/version-resolver.js';
import { DiskBlobStore, type BlobStore } from '../../src/storage/index.js';
import { rawRgbPng } from '../helpers/datasets.js';
import { dbTargets, makeTempDir, openTestDb, type TestDb } from '../helpers/db.js';
import { startS3 } from '../helpers/s3.js';
import { rng, tinyBackbone } from '../helpers/tiny-backbone.js';
import { maxAbsDiff, referenceLogits, storeAdapters, TINY, variedSpec, type StoredAdapter } from '../serve/engine-helpers.js';

const stores: Array<{ name: string; open: () => Promise<{ store: BlobStore; stop: () => Promise<void> }> }> = [
  {
    name: 'disk',
    open: async () => {
      const dir = await makeTempDir('dtl-classify');
      const store = await DiskBlobStore.open({ root: dir, fsync: false });
      return { store, stop: async () => { await store.close(); await fs.rm(dir, { recursive: true, force: true }); } };
    },
  },
  {
    name: 's3rver',
    open: async () => {
      const s3 = await startS3();
      return { store: s3.store, stop: () => s3.stop() };
    },
  },
];

const targets = dbTargets().flatMap((db) => stores.map((s) => ({ ...s, db, label: `${db} + ${s.name}` })));

function storedSpec(spec: AdapterSpec): StoredSpec {
  return { rank: spec.rank, beta: spec.beta, blocks: spec.addAfterBlocks, kernel: spec.fusionKernel, labels: spec.labels };
}

async function randomPng(seed: number, size: number): Promise<Buffer> {
  const r = rng(seed);
  return rawRgbPng(size, size, Uint8Array.from({ length: size * size * 3 }, () => Math.floor(r.uniform() * 256)));
}

describe.each(targets)('classify service: $label', ({ db: kind, open }) => {
  let backbone: Backbone;
  let database: TestDb;
  let store: BlobStore;
  let stop: () => Promise<void>;
  let deps: ServiceDeps & { resolver: VersionResolver };
  let reads: Map<string, number>;
  let engine: ServingEngine;
  let files: StoredAdapter[];
  let pngs: Buffer[];
  let pixels: Float32Array[];
  let alice: TenantCtx;
  let bob: TenantCtx;
  /** Alice's adapter 'shapes' (v1 = files[0]) and 'colours' (v1 = files[1]); Bob's 'shapes' (files[2]). */
  const ids: Record<string, string> = {};

  async function publish(ctx: TenantCtx, adapterId: string, file: StoredAdapter, aliases?: string[]) {
    return adaptersRepo.publishVersion(database.db, ctx.tenantId, adapterId, {
      objectKey: file.ref.objectKey,
      spec: storedSpec(file.spec),
      backboneId: backbone.identity,
      byteSize: file.bytes.length,
      source: 'trained',
      aliases,
    });
  }

  beforeAll(async () => {
    await initBackend('wasm');
    backbone = tinyBackbone(TINY);
    database = await openTestDb(kind);
    ({ store, stop } = await open());
    // The real store with its reads counted; everything else passes through.
    reads = new Map();
    const counted = Object.create(store) as BlobStore;
    counted.getBuffer = async (key: string) => {
      reads.set(key, (reads.get(key) ?? 0) + 1);
      return store.getBuffer(key);
    };
    const config = loadConfig({ ADAPTER_CACHE_BYTES: String(1 << 20), BATCH_MAX_WAIT_MS: '2' });
    deps = { config, log: createLogger('silent'), database, blobs: counted, backbone, resolver: new VersionResolver({ database }) };
    engine = ServingEngine.fromConfig(config, backbone, counted);

    files = await storeAdapters(store, backbone, 5, { prefix: 'tenants/x/adapters', spec: (i) => variedSpec(i + 20) });
    const a = await tenantsRepo.create(database.db, { name: 'alice' });
    const b = await tenantsRepo.create(database.db, { name: 'bob' });
    alice = { tenantId: a.id };
    bob = { tenantId: b.id };
    ids.aliceShapes = (await adaptersRepo.create(database.db, alice.tenantId, { name: 'shapes' })).id;
    ids.aliceColours = (await adaptersRepo.create(database.db, alice.tenantId, { name: 'colours' })).id;
    ids.bobShapes = (await adaptersRepo.create(database.db, bob.tenantId, { name: 'shapes' })).id;
    await publish(alice, ids.aliceShapes, files[0], ['latest', 'stable']);
    await publish(alice, ids.aliceColours, files[1]);
    await publish(bob, ids.bobShapes, files[2]);
    ids.aliceEmpty = (await adaptersRepo.create(database.db, alice.tenantId, { name: 'untrained' })).id;

    pngs = await Promise.all([1, 2, 3].map((s) => randomPng(s, 12)));
    pixels = await Promise.all(pngs.map((p) => preprocessImage(p, backbone.config)));
  });

  afterAll(async () => {
    await engine?.close();
    await stop?.();
    await database?.close();
    backbone?.dispose();
  });

  const ref = (file: StoredAdapter, image: number) => referenceLogits(backbone, file.bytes, pixels[image]);

  it('by name (latest): every image answered by its adapter version, top-k sorted, timings reported', async () => {
    const { results } = await classify({ deps, engine, ctx: alice, input: { adapter: 'shapes', images: pngs, topK: 3 } });
    expect(results).toHaveLength(3);
    results.forEach((r, i) => {
      expect(r.adapter).toMatchObject({ adapterId: ids.aliceShapes, adapterName: 'shapes', version: 1 });
      const expected = ref(files[0], i).probs;
      const labels = files[0].spec.labels;
      const order = [...expected.keys()].sort((x, y) => expected[y] - expected[x]).slice(0, 3);
      expect(r.predictions.map((p) => p.label)).toEqual(order.map((k) => labels[k]));
      r.predictions.forEach((p, k) => expect(Math.abs(p.probability - expected[order[k]])).toBeLessThan(1e-5));
      for (const key of ['resolveMs', 'preprocessMs', 'queueMs', 'loadMs', 'prefixMs', 'adapterMs', 'totalMs'] as const) {
        expect(r.timings[key]).toBeGreaterThanOrEqual(0);
      }
      expect(r.timings.totalMs).toBeGreaterThanOrEqual(r.timings.prefixMs + r.timings.adapterMs);
    });
  });

  it('by id, pinned version, and alias; threshold drops improbable labels', async () => {
    const byId = await classify({ deps, engine, ctx: alice, input: { adapter: ids.aliceColours, images: [pngs[0]], topK: 100 } });
    expect(byId.results[0].predictions).toHaveLength(files[1].spec.labels.length);
    expect(byId.results[0].predictions.reduce((a, p) => a + p.probability, 0)).toBeCloseTo(1, 5);
    const threshold = byId.results[0].predictions[0].probability - 1e-6;
    const filtered = await classify({ deps, engine, ctx: alice, input: { adapter: ids.aliceColours, images: [pngs[0]], topK: 100, threshold } });
    expect(filtered.results[0].predictions).toHaveLength(1);
    const pinned = await classify({ deps, engine, ctx: alice, input: { adapter: 'shapes', version: 1, images: [pngs[1]] } });
    const aliased = await classify({ deps, engine, ctx: alice, input: { adapter: 'shapes', alias: 'stable', images: [pngs[1]] } });
    expect(pinned.results[0]).toMatchObject({ adapter: { version: 1 }, predictions: aliased.results[0].predictions });
  });

  it('a new version and an alias move are seen by the very next request', async () => {
    const v2 = await publish(alice, ids.aliceShapes, files[3]); // moves 'latest'
    const next = await classify({ deps, engine, ctx: alice, input: { adapter: 'shapes', images: [pngs[2]], topK: 100 } });
    expect(next.results[0].adapter).toMatchObject({ version: 2, versionId: v2.version.id });
    const expected = ref(files[3], 2).probs;
    for (const p of next.results[0].predictions) {
      expect(Math.abs(p.probability - expected[files[3].spec.labels.indexOf(p.label)])).toBeLessThan(1e-5);
    }
    // 'stable' still names v1.
    const stable = await classify({ deps, engine, ctx: alice, input: { adapter: 'shapes', alias: 'stable', images: [pngs[2]] } });
    expect(stable.results[0].adapter.version).toBe(1);
    // Roll 'latest' back to v1: the next request follows.
    await adaptersRepo.setAlias(database.db, alice.tenantId, ids.aliceShapes, 'latest', 1);
    const back = await classify({ deps, engine, ctx: alice, input: { adapter: 'shapes', images: [pngs[2]] } });
    expect(back.results[0].adapter.version).toBe(1);
    // On PGlite the resolver answered some of these from memory; none of them was stale.
    if (kind === 'pglite') expect(deps.resolver.stats().hits).toBeGreaterThan(0);
    else expect(deps.resolver.stats().hits).toBe(0);
  });

  it('N concurrent requests for a cold version: one blob read', async () => {
    const v3 = await publish(alice, ids.aliceColours, files[4]);
    const before = reads.get(files[4].ref.objectKey) ?? 0;
    const all = await Promise.all(
      Array.from({ length: 12 }, (_, i) => classify({ deps, engine, ctx: alice, input: { adapter: 'colours', images: [pngs[i % 3]] } })),
    );
    expect((reads.get(files[4].ref.objectKey) ?? 0) - before).toBe(1);
    for (const r of all) expect(r.results[0].adapter.versionId).toBe(v3.version.id);
  });

  it("another tenant's adapter is not found, by name or by id; so are missing adapters, versions and aliases", async () => {
    // Bob's 'shapes' is his own; Alice's id is not reachable for him.
    const own = await classify({ deps, engine, ctx: bob, input: { adapter: 'shapes', images: [pngs[0]] } });
    expect(own.results[0].adapter.adapterId).toBe(ids.bobShapes);
    expect(maxAbsDiff(own.results[0].predictions.map((p) => p.probability), [...ref(files[2], 0).probs].sort((a, b) => b - a).slice(0, own.results[0].predictions.length))).toBeLessThan(1e-5);
    for (const input of [
      { adapter: ids.aliceShapes, images: [pngs[0]] },
      { adapter: 'colours', images: [pngs[0]] },
      { adapter: 'nope', images: [pngs[0]] },
      { adapter: '00000000-0000-4000-8000-000000000000', images: [pngs[0]] },
      { adapter: 'shapes', version: 9, images: [pngs[0]] },
      { adapter: 'shapes', alias: 'canary', images: [pngs[0]] },
    ]) {
      await expect(classify({ deps, engine, ctx: bob, input })).rejects.toMatchObject({ code: 'not_found' });
    }
    await expect(classify({ deps, engine, ctx: alice, input: { adapter: 'untrained', images: [pngs[0]] } })).rejects.toMatchObject({ code: 'not_found' });
    // The lookup and the decode run side by side; a foreign adapter is a 404 even with a broken image.
    await expect(classify({ deps, engine, ctx: bob, input: { adapter: ids.aliceShapes, images: [Buffer.from('not an image')] } })).rejects.toMatchObject({ code: 'not_found' });
    await expect(classifyFanOut({ deps, engine, ctx: bob, input: { image: Buffer.from('not an image'), adapters: [ids.aliceShapes] } })).rejects.toMatchObject({ code: 'not_found' });
    await expect(
      classifyFanOut({ deps, engine, ctx: bob, input: { image: pngs[0], adapters: ['shapes', ids.aliceColours] } }),
    ).rejects.toMatchObject({ code: 'not_found' });
  });

  it('fan-out: one image, several of the caller’s adapters (one twice), each answered by its own version', async () => {
    const { results } = await classifyFanOut({
      deps, engine, ctx: alice,
      input: { image: pngs[1], adapters: ['shapes', { adapter: 'shapes', alias: 'stable' }, { adapter: ids.aliceColours, version: 1 }], topK: 100 },
    });
    expect(results.map((r) => [r.adapter.adapterName, r.adapter.version])).toEqual([['shapes', 1], ['shapes', 1], ['colours', 1]]);
    const expected = ref(files[1], 1).probs;
    for (const p of results[2].predictions) {
      expect(Math.abs(p.probability - expected[files[1].spec.labels.indexOf(p.label)])).toBeLessThan(1e-5);
    }
    expect(results[0].predictions).toEqual(results[1].predictions);
  });

  it('bad input is a typed error naming the image', async () => {
    const err = await classify({ deps, engine, ctx: alice, input: { adapter: 'shapes', images: [pngs[0], Buffer.from('not an image')] } }).catch((e) => e);
    expect(err).toMatchObject({ code: 'invalid_image', details: { index: 1 } });
    await expect(classify({ deps, engine, ctx: alice, input: { adapter: 'shapes', images: [] } })).rejects.toMatchObject({ code: 'validation_failed' });
    await expect(classify({ deps, engine, ctx: alice, input: { adapter: 'shapes', version: 1, alias: 'stable', images: [pngs[0]] } })).rejects.toMatchObject({ code: 'validation_failed' });
    await expect(classify({ deps, engine, ctx: alice, input: { adapter: 'shapes', images: [pngs[0]], topK: 0 } })).rejects.toMatchObject({ code: 'validation_failed' });
    await expect(classifyFanOut({ deps, engine, ctx: alice, input: { image: pngs[0], adapters: [] } })).rejects.toMatchObject({ code: 'validation_failed' });
  });
});
