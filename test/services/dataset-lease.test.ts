/**
 * Issue 11, item 11, at the service (PGlite; PostgreSQL too when DATABASE_URL is set): the row of
 * an upload exists from its first byte, 'processing' under a lease the upload renews; a reader
 * that finds the lease lapsed shows the data set failed, and the upload that lost its lease stops.
 */
import { PassThrough } from 'node:stream';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as datasetsRepo from '../../src/db/repos/datasets.js';
import { INTERRUPTED } from '../../src/db/repos/datasets.js';
import { createDataset, getDataset, listDatasets, type DatasetView } from '../../src/services/datasets.js';
import { makeShapesDataset, zipClassFolders } from '../helpers/datasets.js';
import { dbTargets } from '../helpers/db.js';
import { openServiceFixture, type ServiceFixture } from '../train/service-fixture.js';

const LEASE_MS = 1000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.each(dbTargets())('data set upload lease on %s', (kind) => {
  let f: ServiceFixture;
  let zip: Buffer;
  beforeAll(async () => {
    f = await openServiceFixture(kind, { DATASET_LEASE_MS: String(LEASE_MS) });
    zip = await zipClassFolders(await makeShapesDataset({ classes: 2, perClass: 3, size: 24, seed: 6 }));
  });
  afterAll(() => f?.close());

  /** Starts an upload whose body stops half-way; resolves once its row is listed. */
  async function stalledUpload(name: string) {
    const source = new PassThrough();
    const done = createDataset({ deps: f.deps, ctx: f.ctx, input: { name, source, contentType: 'application/zip' } });
    done.catch(() => {}); // awaited by the test
    source.write(zip.subarray(0, zip.length >> 1));
    let row: DatasetView | undefined;
    for (let i = 0; row === undefined; i++) {
      expect(i).toBeLessThan(400);
      await sleep(10);
      row = (await listDatasets({ deps: f.deps, ctx: f.ctx })).find((d) => d.name === name);
    }
    return { source, done, row };
  }

  it('an upload slower than the lease is processing throughout (renewed) and ends ready', async () => {
    const { source, done, row } = await stalledUpload('slow');
    expect(row.status).toBe('processing');
    await sleep(LEASE_MS * 2.5);
    expect((await getDataset({ deps: f.deps, ctx: f.ctx, id: row.id })).status).toBe('processing');
    source.end(zip.subarray(zip.length >> 1));
    const r = await done;
    expect(r.dataset).toMatchObject({ id: row.id, status: 'ready', imageCount: 6 });
    expect((await datasetsRepo.get(f.db.db, f.ctx.tenantId, row.id)).leaseUntil).toBeNull();
  });

  it('a reader fails an upload whose lease lapsed; the upload, its lease lost, stops (503) and leaves nothing', async () => {
    const { done, row } = await stalledUpload('stalled');
    // As if this process had stalled past its lease: the database's clock says it lapsed.
    await f.db.db.execute(sql`update datasets set lease_until = now() - interval '1 second' where id = ${row.id}`);
    const seen = await getDataset({ deps: f.deps, ctx: f.ctx, id: row.id });
    expect(seen).toMatchObject({ status: 'failed', error: INTERRUPTED, byteSize: 0 });
    await expect(done).rejects.toMatchObject({ code: 'unavailable', message: expect.stringMatching(/marked interrupted; upload again$/) });
    expect((await listDatasets({ deps: f.deps, ctx: f.ctx })).map((d) => d.name)).not.toContain('stalled');
    expect(await f.keys(`tenants/${f.ctx.tenantId}/datasets/${row.id}/`)).toEqual([]);
    expect(await f.tmpLeftovers()).toEqual([]);
  });
});
