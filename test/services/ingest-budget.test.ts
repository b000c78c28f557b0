/**
 * Issue 11, item 3, at the service: the probe's many-entry zip bomb is refused before anything is
 * inflated and leaves nothing behind; a tenant's uploads being read at once share one budget of
 * entries and uncompressed bytes (413 payload_too_large beyond it), released whatever happens.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tenantsRepo from '../../src/db/repos/tenants.js';
import { AppError } from '../../src/errors.js';
import { createDataset, listDatasets } from '../../src/services/datasets.js';
import { IngestBudget, ingestBudgetFor } from '../../src/services/ingest-budget.js';
import { bufferStream, makeShapesDataset, makeZip, type ZipItem } from '../helpers/datasets.js';
import { dbTargets } from '../helpers/db.js';
import { manyEntryZipBomb } from '../helpers/zip-bomb.js';
import { openServiceFixture, type ServiceFixture } from '../train/service-fixture.js';

async function failure(p: Promise<unknown>): Promise<AppError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    return err as AppError;
  }
  throw new Error('expected the call to fail');
}

describe('IngestBudget', () => {
  it('sums a tenant’s reservations, refuses beyond either limit, and releases once', () => {
    const budget = new IngestBudget({ bytes: 1000, entries: 10 });
    const a = budget.reserve('t1', { entries: 6, inflatedBytes: 600 });
    expect(() => budget.reserve('t1', { entries: 5, inflatedBytes: 100 })).toThrow(
      expect.objectContaining({ code: 'payload_too_large', details: { kind: 'tenant_ingest_entries', limit: 10, inUse: 6, requested: 5 } }),
    );
    expect(() => budget.reserve('t1', { entries: 1, inflatedBytes: 500 })).toThrow(
      expect.objectContaining({ code: 'payload_too_large', details: { kind: 'tenant_ingest_bytes', limit: 1000, inUse: 600, requested: 500 } }),
    );
    const other = budget.reserve('t2', { entries: 10, inflatedBytes: 1000 }); // another tenant's own budget
    const b = budget.reserve('t1', { entries: 4, inflatedBytes: 400 });
    expect(budget.usage('t1')).toEqual({ entries: 10, bytes: 1000, uploads: 2 });
    a.release();
    a.release();
    expect(budget.usage('t1')).toEqual({ entries: 4, bytes: 400, uploads: 1 });
    b.release();
    other.release();
    expect(budget.usage('t1')).toEqual({ entries: 0, bytes: 0, uploads: 0 });
  });
});

describe.each(dbTargets())('upload limits before inflating, on %s', (kind) => {
  let f: ServiceFixture;
  let zip: Buffer;
  let small: ZipItem[];
  const upload = (body: Buffer, name = 'set', ctx = f.ctx) =>
    createDataset({ deps: f.deps, ctx, input: { name, source: bufferStream(body), contentType: 'application/zip' } });
  const state = async (tenantId = f.ctx.tenantId) => ({
    usage: await tenantsRepo.usage(f.db.db, tenantId),
    datasets: (await listDatasets({ deps: f.deps, ctx: { tenantId } })).map((d) => [d.id, d.status]),
    blobs: await f.keys(`tenants/${tenantId}/`),
  });

  beforeAll(async () => {
    // Room for one 1,000-image upload at a time (and plenty of bytes).
    f = await openServiceFixture(kind, { INGEST_TENANT_ENTRIES: '1500' });
    // 40×40 against the backbone's 32: every image is resized by sharp (≈ 1 ms), so the first upload
    // is still decoding when the second arrives. Images already at 32×32 decode without sharp
    // (model/png-exact-size.ts), and 1,000 of them finished before the second upload began.
    const sample = await makeShapesDataset({ classes: 2, perClass: 10, size: 40, seed: 3 });
    const items: ZipItem[] = [];
    for (let i = 0; i < 1000; i++) items.push({ name: `${sample[i % 20].label}/${i}.png`, data: sample[i % 20].data });
    zip = await makeZip(items);
    small = sample.slice(8, 12).map((img, i) => ({ name: `${img.label}/${i}.png`, data: img.data }));
  });
  afterAll(() => f?.close());

  it("the probe's 1,100-entry bomb is refused before inflating; nothing stored, the tenant's usage unchanged", async () => {
    const before = await state();
    const bomb = manyEntryZipBomb(1100, 1024 * 1024 - 1);
    const err = await failure(upload(bomb, 'bomb'));
    expect(err.code).toBe('invalid_archive');
    expect(err.status).toBe(400);
    expect(err.details).toMatchObject({ limit: 'maxArchiveRatio' });
    expect(err.message).toMatch(/refused before inflating$/);
    expect(await state()).toEqual(before);
    expect(ingestBudgetFor(f.deps).usage(f.ctx.tenantId)).toEqual({ entries: 0, bytes: 0, uploads: 0 });
    expect(await f.tmpLeftovers()).toEqual([]);
  });

  it('two concurrent large-but-legal uploads of one tenant over its budget: the second is refused (413), the first completes', async () => {
    const budget = ingestBudgetFor(f.deps);
    const first = upload(zip, 'first');
    first.catch(() => {}); // awaited below; a failing assertion before then must not leave it unhandled
    // The first holds its reservation while its 1,000 images are decoded (seconds).
    for (let i = 0; budget.usage(f.ctx.tenantId).uploads === 0; i++) {
      expect(i).toBeLessThan(2000);
      await new Promise((r) => setTimeout(r, 5));
    }
    const before = await state(f.other.tenantId);
    const second = await failure(upload(zip, 'second'));
    expect(second.code).toBe('payload_too_large');
    expect(second.status).toBe(413);
    expect(second.details).toEqual({ kind: 'tenant_ingest_entries', limit: 1500, inUse: 1000, requested: 1000 });
    expect(second.message).toMatch(/with 1 other upload of this tenant in progress/);
    // Another tenant has a budget of its own.
    const theirs = await upload(await makeZip(small), 'theirs', f.other);
    expect(theirs.dataset.status).toBe('ready');
    expect((await state(f.other.tenantId)).datasets.length).toBe(before.datasets.length + 1);

    const done = await first;
    expect(done.dataset).toMatchObject({ name: 'first', status: 'ready', imageCount: 1000 });
    expect(budget.usage(f.ctx.tenantId)).toEqual({ entries: 0, bytes: 0, uploads: 0 });
    // Released: the same upload is accepted now.
    expect((await upload(zip, 'again')).dataset.status).toBe('ready');
    expect((await listDatasets({ deps: f.deps, ctx: f.ctx })).map((d) => d.name).sort()).toEqual(['again', 'first']);
    expect(await f.tmpLeftovers()).toEqual([]);
  });

  it('a failed upload gives its reservation back', async () => {
    const bad = await makeZip([{ name: 'a/1.png', data: Buffer.from('not an image') }, { name: 'b/1.png', data: Buffer.from('nor this') }]);
    expect((await failure(upload(bad, 'bad'))).code).toBe('invalid_dataset');
    expect(ingestBudgetFor(f.deps).usage(f.ctx.tenantId)).toEqual({ entries: 0, bytes: 0, uploads: 0 });
  });
});
