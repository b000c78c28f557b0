/**
 * The datasets service on real parts (PGlite / PostgreSQL, disk blob store): uploads become rows +
 * blobs under the tenant's prefix; tenants are isolated; every hostile or broken upload fails with
 * a stable code and message and leaves earlier data sets and adapter versions byte-identical.
 */
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as adaptersRepo from '../../src/db/repos/adapters.js';
import { AppError } from '../../src/errors.js';
import { createAdapter, saveAdapter } from '../../src/model/index.js';
import { createDataset, deleteDataset, getDataset, listDatasets } from '../../src/services/datasets.js';
import { decodePrepared } from '../../src/train/ingest/index.js';
import {
  bufferStream,
  craftLargePng,
  jsonlText,
  makeShapesDataset,
  makeZip,
  replaceBytes,
  zipClassFolders,
  type ZipItem,
} from '../helpers/datasets.js';
import { dbTargets } from '../helpers/db.js';
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

describe.each(dbTargets())('datasets service on %s', (kind) => {
  let f: ServiceFixture;
  let zip: Buffer;
  let good: Array<{ name: string; data: Buffer }>;
  let png: Buffer;
  let firstId: string;

  const upload = (body: Buffer | string, opts: { name?: string; policy?: 'skip' | 'reject'; contentType?: string } = {}, ctx = f.ctx, deps = f.deps) =>
    createDataset({ deps, ctx, input: { name: opts.name ?? 'set', source: bufferStream(body), contentType: opts.contentType ?? 'application/zip', policy: opts.policy } });

  beforeAll(async () => {
    f = await openServiceFixture(kind);
    const images = await makeShapesDataset({ classes: 3, perClass: 4, size: 40, seed: 2 });
    zip = await zipClassFolders(images);
    png = images[0].data;
    good = images.slice(0, 4).map((img, i) => ({ name: `${i < 2 ? 'cat' : 'dog'}/${i}.png`, data: img.data }));
  });
  afterAll(() => f?.close());

  it('stores the raw upload and the prepared form under the tenant prefix and records the row', async () => {
    const r = await upload(zip, { name: ' shapes ' });
    const d = r.dataset;
    firstId = d.id;
    expect(r.form).toBe('zip-folders');
    expect(r.problemCount).toBe(0);
    expect(d).toMatchObject({ name: 'shapes', status: 'ready', labels: ['circle', 'square', 'triangle'], imageCount: 12, problems: [], error: null });
    expect(d.classes.circle).toEqual({ train: 0, val: 0, test: 0, unassigned: 4, total: 4 });
    const prefix = `tenants/${f.ctx.tenantId}/datasets/${d.id}/`;
    expect(await f.keys(prefix)).toEqual([`${prefix}prepared.bin`, `${prefix}upload`]);
    const raw = await f.blobs.getBuffer(`${prefix}upload`);
    expect(raw.equals(zip)).toBe(true);
    const prepared = decodePrepared(await f.blobs.getBuffer(`${prefix}prepared.bin`));
    expect(prepared.imageSize).toBe(f.deps.backbone.config.imageSize);
    expect(prepared.labels).toEqual(['circle', 'square', 'triangle']);
    expect(d.byteSize).toBe(raw.length + (await f.blobs.head(`${prefix}prepared.bin`))!.size);
    expect(await getDataset({ deps: f.deps, ctx: f.ctx, id: d.id })).toEqual(d);
    expect((await listDatasets({ deps: f.deps, ctx: f.ctx })).map((x) => x.id)).toEqual([d.id]);
    expect(await f.tmpLeftovers()).toEqual([]);
  });

  it("under 'skip' unreadable files are reported by name and the rest is kept", async () => {
    const body = await makeZip([...good, { name: 'cat/notes.txt', data: Buffer.from('hello') }]);
    const r = await upload(body, { name: 'with-problems' });
    expect(r.dataset.imageCount).toBe(4);
    expect(r.dataset.problems).toEqual([
      { code: 'invalid_image', message: 'not a supported image (accepted: JPEG, PNG, WebP, GIF, TIFF, AVIF)', file: 'cat/notes.txt' },
    ]);
    const jsonl = await createDataset({
      deps: f.deps,
      ctx: f.ctx,
      input: { name: 'jsonl', source: bufferStream(jsonlText(good.map((g) => ({ label: g.name.split('/')[0], name: g.name, data: g.data })))), contentType: 'application/x-ndjson' },
    });
    expect(jsonl.form).toBe('jsonl');
    expect(jsonl.dataset.labels).toEqual(['cat', 'dog']);
    await deleteDataset({ deps: f.deps, ctx: f.ctx, id: r.dataset.id });
    await deleteDataset({ deps: f.deps, ctx: f.ctx, id: jsonl.dataset.id });
  });

  it("another tenant's data set is not_found for every verb", async () => {
    const foreign = { deps: f.deps, ctx: f.other };
    expect((await failure(getDataset({ ...foreign, id: firstId }))).code).toBe('not_found');
    expect((await failure(deleteDataset({ ...foreign, id: firstId }))).code).toBe('not_found');
    expect(await listDatasets(foreign)).toEqual([]);
    expect((await failure(getDataset({ deps: f.deps, ctx: f.ctx, id: 'not-a-uuid' }))).code).toBe('not_found');
    expect((await failure(getDataset({ deps: f.deps, ctx: f.ctx, id: '00000000-0000-4000-8000-000000000000' }))).code).toBe('not_found');
    expect((await getDataset({ deps: f.deps, ctx: f.ctx, id: firstId })).status).toBe('ready');
  });

  it('bad data sets each fail with a clear code and message; earlier data sets and adapters stay byte-identical', async () => {
    // An adapter version published before the bad uploads.
    const adapterRow = await adaptersRepo.create(f.db.db, f.ctx.tenantId, { name: 'kept' });
    const adapter = createAdapter(f.deps.backbone.config, { rank: 2, beta: 100, loraBeforeBlocks: [0, 1, 2, 3], addAfterBlocks: [2, 3], fusionKernel: 0, labels: ['a', 'b'] }, { seed: 1 });
    const adapterBytes = saveAdapter(adapter);
    adapter.dispose();
    const adapterKey = `tenants/${f.ctx.tenantId}/adapters/${adapterRow.id}/v1-test.safetensors`;
    await f.blobs.putBuffer(adapterKey, adapterBytes);
    const { version } = await adaptersRepo.publishVersion(f.db.db, f.ctx.tenantId, adapterRow.id, {
      objectKey: adapterKey,
      spec: { rank: 2, blocks: [2, 3], labels: ['a', 'b'] },
      backboneId: f.deps.backbone.identity,
      byteSize: adapterBytes.length,
      source: 'imported',
    });
    const snapshot = async () => ({
      dataset: await getDataset({ deps: f.deps, ctx: f.ctx, id: firstId }),
      blobs: await Promise.all((await f.keys(`tenants/${f.ctx.tenantId}/`)).map(async (k) => [k, (await f.blobs.getBuffer(k)).toString('base64')])),
      version: await adaptersRepo.getVersion(f.db.db, f.ctx.tenantId, adapterRow.id, 1),
      datasets: (await listDatasets({ deps: f.deps, ctx: f.ctx })).map((d) => d.id),
    });
    const before = await snapshot();
    expect(before.blobs.map(([k]) => k)).toContain(adapterKey);

    const noise = Buffer.alloc(96 * 96 * 3);
    for (let i = 0; i < noise.length; i++) noise[i] = (i * 2654435761) >>> 24;
    const jpeg = await sharp(noise, { raw: { width: 96, height: 96, channels: 3 } }).jpeg().toBuffer();
    const many: ZipItem[] = [];
    for (let i = 0; i <= 10_000; i++) many.push({ name: `c${i}/x.png`, data: Buffer.from('not an image') });
    const cases: Array<[string, Buffer | string, 'skip' | 'reject', string, RegExp]> = [
      ['zip slip', replaceBytes(await makeZip([...good, { name: 'QQ/evil.png', data: png }]), 'QQ/evil.png', '../evil.png'), 'skip', 'invalid_archive', /^archive entry '\.\.\/evil\.png' climbs out of the archive with '\.\.'/],
      ['zip bomb', await makeZip([...good, { name: 'cat/bomb.png', data: Buffer.alloc(5 << 20), compressionLevel: 9 }]), 'skip', 'invalid_archive', /^archive entry 'cat\/bomb\.png' expands \d+:1 .*zip bomb/],
      ['one class', await makeZip(good.slice(0, 2)), 'skip', 'invalid_dataset', /^a data set needs at least 2 classes; found only one class \('cat'\)$/],
      ['empty classes', await makeZip([...good, { dir: 'bird/' }, { dir: 'fish/' }]), 'reject', 'invalid_dataset', /^data set rejected: 2 problems: bird \(empty_class: class 'bird' has no usable images\); fish/],
      ['only empty classes', await makeZip([{ dir: 'bird/' }, { dir: 'fish/' }]), 'skip', 'invalid_dataset', /at least 2 classes/],
      ['non-images', await makeZip([{ name: 'a/1.txt', data: Buffer.from('x') }, { name: 'b/1.pdf', data: Buffer.from('%PDF-1.4') }]), 'skip', 'invalid_dataset', /at least 2 classes/],
      ['truncated JPEG', await makeZip([...good, { name: 'dog/cut.jpg', data: jpeg.subarray(0, Math.floor(jpeg.length * 0.6)) }]), 'reject', 'invalid_dataset', /^data set rejected: 1 problem: dog\/cut\.jpg \(invalid_image: truncated jpeg/i],
      ['20000×20000 PNG', await makeZip([...good, { name: 'dog/huge.png', data: await craftLargePng(20000, 20000), compress: true }]), 'reject', 'invalid_dataset', /dog\/huge\.png \(invalid_image: image is 20000×20000 = 400000000 pixels; the limit is 40000000\)/],
      ['10,001 classes', await makeZip(many), 'reject', 'invalid_dataset', /^data set has 10001 classes; the limit is 10000$/],
      ['non-UTF-8 name', replaceBytes(await makeZip([...good, { name: 'cafQ/1.png', data: png }]), 'cafQ/', Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x2f])), 'reject', 'invalid_dataset', /caf\\xE9\/1\.png \(invalid_name: entry name is not valid UTF-8/],
      ['not a data set at all', 'hello world', 'skip', 'unsupported_media_type', /./],
    ];
    for (const [what, body, policy, code, message] of cases) {
      const err = await failure(upload(body, { policy, contentType: typeof body === 'string' ? 'text/plain' : 'application/zip' }));
      expect(err.code, what).toBe(code);
      expect(err.message, what).toMatch(message);
    }
    expect(await snapshot()).toEqual(before);
    expect((await f.blobs.getBuffer(version.objectKey)).equals(adapterBytes)).toBe(true);
    expect(await f.tmpLeftovers()).toEqual([]);
  });

  it('limits: upload size, quotas (count and bytes), bad names and policies', async () => {
    const small = { ...f.deps, config: { ...f.deps.config, UPLOAD_MAX_BYTES: 2000 } };
    const tooBig = await failure(upload(zip, {}, f.ctx, small));
    expect(tooBig.code).toBe('payload_too_large');
    const count = { ...f.deps, config: { ...f.deps.config, QUOTA_DATASETS: 1 } };
    expect(await failure(upload(zip, {}, f.ctx, count))).toMatchObject({ code: 'quota_exceeded', message: 'quota reached: at most 1 datasets per tenant' });
    // The other tenant is not affected by this tenant's count.
    const theirs = await upload(zip, { name: 'theirs' }, f.other, count);
    const used = theirs.dataset.byteSize;
    const bytes = { ...f.deps, config: { ...f.deps.config, QUOTA_BYTES: used + 1000 } };
    const q = await failure(upload(zip, {}, f.other, bytes));
    expect(q.code).toBe('quota_exceeded');
    expect(q.message).toMatch(/^storage quota reached/);
    expect((await failure(upload(zip, { name: '   ' }))).code).toBe('validation_failed');
    expect((await failure(createDataset({ deps: f.deps, ctx: f.ctx, input: { name: 'x', source: bufferStream(zip), policy: 'maybe' as 'skip' } }))).code).toBe('validation_failed');
    await deleteDataset({ deps: f.deps, ctx: f.other, id: theirs.dataset.id });
    expect(await f.keys(`tenants/${f.other.tenantId}/`)).toEqual([]);
    expect(await f.tmpLeftovers()).toEqual([]);
  });

  it('deleteDataset removes the row and its blobs', async () => {
    const r = await upload(zip, { name: 'doomed' });
    const prefix = `tenants/${f.ctx.tenantId}/datasets/${r.dataset.id}/`;
    expect((await f.keys(prefix)).length).toBe(2);
    await deleteDataset({ deps: f.deps, ctx: f.ctx, id: r.dataset.id });
    expect(await f.keys(prefix)).toEqual([]);
    expect((await failure(getDataset({ deps: f.deps, ctx: f.ctx, id: r.dataset.id }))).code).toBe('not_found');
    expect((await getDataset({ deps: f.deps, ctx: f.ctx, id: firstId })).status).toBe('ready');
  });
});
