/**
 * Data sets, adapters and jobs through the HTTP layer (app.request, real PGlite, disk blobs,
 * a real in-process training worker on the tiny golden backbone): happy paths and error codes.
 */
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeShapesDataset, jsonlText, zipClassFolders } from '../helpers/datasets.js';
import { fixturePath, startHarness, type Harness, type RequestBody } from './harness.js';
import { readSse } from './sse.js';

let h: Harness;
let t: { id: string; token: string };
let zip: Buffer;
const FAST = { epochs: 2, warmupEpochs: 0, batchSize: 16, patience: 0 };

beforeAll(async () => {
  h = await startHarness({ worker: true, env: { QUOTA_DATASETS: '3', UPLOAD_MAX_BYTES: '1000000' } });
  t = await h.tenant('res-co');
  zip = await zipClassFolders(await makeShapesDataset({ classes: 3, perClass: 6, size: 32, seed: 5 }));
});
afterAll(async () => {
  await h?.close();
});

const up = (body: RequestBody, query: string, headers: Record<string, string> = {}) =>
  h.call('POST', `/v1/datasets${query}`, { token: t.token, body: body as never, headers });

describe('datasets', () => {
  let datasetId: string;

  it('uploads a raw zip and reports per-class counts', async () => {
    const r = await up(zip, '?name=shapes', { 'content-type': 'application/zip' });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ name: 'shapes', status: 'ready', imageCount: 18, form: 'zip-folders', problemCount: 0 });
    expect(r.body.labels).toHaveLength(3);
    expect(Object.values(r.body.classes).map((c) => (c as { total: number }).total)).toEqual([6, 6, 6]);
    datasetId = r.body.id;
    const got = await h.call('GET', `/v1/datasets/${datasetId}`, { token: t.token });
    expect(got.status).toBe(200);
    expect(got.body.id).toBe(datasetId);
    const listed = await h.call('GET', '/v1/datasets?status=ready', { token: t.token });
    expect(listed.body.items.map((d: { id: string }) => d.id)).toContain(datasetId);
  });

  it('uploads multipart with the name as a field before the file', async () => {
    const images = await makeShapesDataset({ classes: 2, perClass: 3, size: 16, seed: 9 });
    const form = new FormData();
    form.append('name', 'from-form');
    form.append('file', new Blob([jsonlText(images)], { type: 'application/x-ndjson' }), 'data.jsonl');
    const r = await h.call('POST', '/v1/datasets', { token: t.token, body: form as never });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ name: 'from-form', form: 'jsonl', imageCount: 6 });
    expect((await h.call('DELETE', `/v1/datasets/${r.body.id}`, { token: t.token })).status).toBe(204);
    expect((await h.call('GET', `/v1/datasets/${r.body.id}`, { token: t.token })).status).toBe(404);
  });

  it('refuses bad uploads with stable codes', async () => {
    const noName = await up(zip, '', { 'content-type': 'application/zip' });
    expect([noName.status, noName.body.error.code]).toEqual([400, 'validation_failed']);
    const image = await up(Buffer.from('GIF89a'), '?name=x', { 'content-type': 'image/gif' });
    expect([image.status, image.body.error.code]).toEqual([415, 'unsupported_media_type']);
    const junk = await up(Buffer.from('not a data set at all'), '?name=x', { 'content-type': 'application/octet-stream' });
    expect(junk.status).toBe(415);
    const form = new FormData();
    form.append('name', 'nofile');
    const noFile = await h.call('POST', '/v1/datasets', { token: t.token, body: form as never });
    expect([noFile.status, noFile.body.error.code]).toEqual([400, 'validation_failed']);
    const two = new FormData();
    two.append('name', 'two');
    two.append('a', new Blob([zip]), 'a.zip');
    two.append('b', new Blob([zip]), 'b.zip');
    expect((await h.call('POST', '/v1/datasets', { token: t.token, body: two as never })).status).toBe(400);
    // The first file was stored before the second one made the request bad: it is undone.
    const names = (await h.call('GET', '/v1/datasets', { token: t.token })).body.items.map((d: { name: string }) => d.name);
    expect(names).not.toContain('two');
    const badPolicy = await up(zip, '?name=x&policy=maybe', { 'content-type': 'application/zip' });
    expect(badPolicy.status).toBe(400);
    // UPLOAD_MAX_BYTES=1000000: cut off while streaming, raw or multipart.
    const huge = Buffer.concat([zip, Buffer.alloc(1_500_000, 7)]);
    const tooBig = await up(huge, '?name=big', { 'content-type': 'application/zip' });
    expect([tooBig.status, tooBig.body.error.code]).toEqual([413, 'payload_too_large']);
    const bigForm = new FormData();
    bigForm.append('name', 'big');
    bigForm.append('file', new Blob([huge]), 'big.zip');
    const tooBigForm = await h.call('POST', '/v1/datasets', { token: t.token, body: bigForm as never });
    expect([tooBigForm.status, tooBigForm.body.error.code]).toEqual([413, 'payload_too_large']);
  });

  it('enforces the data set quota with quota_exceeded', async () => {
    // QUOTA_DATASETS=3: 'shapes' is one; two more fit, the fourth does not.
    for (const name of ['q1', 'q2']) {
      const r = await up(zip, `?name=${name}`, { 'content-type': 'application/zip' });
      expect(r.status, r.text).toBe(201);
    }
    const over = await up(zip, '?name=q3', { 'content-type': 'application/zip' });
    expect([over.status, over.body.error.code]).toEqual([429, 'quota_exceeded']);
    for (const d of (await h.call('GET', '/v1/datasets', { token: t.token })).body.items) {
      if (d.name.startsWith('q')) await h.call('DELETE', `/v1/datasets/${d.id}`, { token: t.token });
    }
  });

  describe('adapters and jobs', () => {
    let adapterId: string;
    let jobId: string;

    it('trains an adapter from the data set and streams the job to completion', async () => {
      const r = await h.call('POST', '/v1/adapters', { token: t.token, body: { datasetId, name: 'shapes-clf', hyperparameters: FAST } });
      expect(r.status).toBe(202);
      expect(r.body.adapter).toMatchObject({ name: 'shapes-clf', versionCount: 0 });
      expect(['training', 'ready']).toContain(r.body.adapter.status);
      expect(r.body.job.status).toMatch(/queued|running/);
      adapterId = r.body.adapter.id;
      jobId = r.body.job.id;
      const res = await h.app.request(`/v1/jobs/${jobId}/events`, { headers: { authorization: `Bearer ${t.token}` } });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toContain('text/event-stream');
      const events = await readSse(res);
      const types = events.map((e) => e.event);
      expect(types).toContain('progress');
      expect(types).toContain('published');
      expect(types.at(-1)).toBe('end');
      expect(JSON.parse(events.at(-1)!.data).status).toBe('succeeded');
      const ids = events.filter((e) => e.id !== undefined).map((e) => Number(e.id));
      expect(ids).toEqual([...ids].sort((a, b) => a - b));
      // Resuming after the last event id yields only the end marker.
      const again = await h.app.request(`/v1/jobs/${jobId}/events`, { headers: { authorization: `Bearer ${t.token}`, 'last-event-id': String(ids.at(-1)) } });
      expect((await readSse(again)).map((e) => e.event)).toEqual(['end']);
      const badResume = await h.call('GET', `/v1/jobs/${jobId}/events`, { token: t.token, headers: { 'last-event-id': 'x' } });
      expect([badResume.status, badResume.body.error.code]).toEqual([400, 'validation_failed']);
      expect((await h.call('GET', '/v1/jobs/00000000-0000-4000-8000-000000000000/events', { token: t.token })).status).toBe(404);
    });

    it('shows the adapter ready with metrics, versions and the latest alias', async () => {
      const a = await h.call('GET', `/v1/adapters/${adapterId}`, { token: t.token });
      expect(a.status).toBe(200);
      expect(a.body).toMatchObject({ status: 'ready', versionCount: 1, aliases: [{ alias: 'latest', version: 1 }] });
      expect(a.body.latest.metrics.evaluation.accuracy).toEqual(expect.any(Number));
      expect(a.body.latest.labels).toHaveLength(3);
      const byName = await h.call('GET', '/v1/adapters/shapes-clf', { token: t.token });
      expect(byName.body.id).toBe(adapterId);
      const versions = await h.call('GET', `/v1/adapters/${adapterId}/versions`, { token: t.token });
      expect(versions.body.items.map((v: { version: number }) => v.version)).toEqual([1]);
      const v = await h.call('GET', `/v1/adapters/${adapterId}/versions/latest`, { token: t.token });
      expect(v.body).toMatchObject({ version: 1, source: 'trained', datasetId, jobId });
      expect((await h.call('GET', `/v1/adapters/${adapterId}/versions/7`, { token: t.token })).status).toBe(404);
      const list = await h.call('GET', '/v1/adapters', { token: t.token });
      expect(list.body.items).toHaveLength(1);
      const job = await h.call('GET', `/v1/jobs/${jobId}`, { token: t.token });
      expect(job.body).toMatchObject({ status: 'succeeded', result: { version: 1, adapterId } });
      expect((await h.call('GET', '/v1/jobs', { token: t.token })).body.items[0].id).toBe(jobId);
    });

    it('sets and removes aliases', async () => {
      const set = await h.call('PUT', `/v1/adapters/${adapterId}/aliases/prod`, { token: t.token, body: { version: 1 } });
      expect([set.status, set.body]).toEqual([200, { alias: 'prod', version: 1 }]);
      expect((await h.call('GET', `/v1/adapters/${adapterId}/versions/prod`, { token: t.token })).body.version).toBe(1);
      const bad = await h.call('PUT', `/v1/adapters/${adapterId}/aliases/9bad`, { token: t.token, body: { version: 1 } });
      expect([bad.status, bad.body.error.code]).toEqual([400, 'validation_failed']);
      const noVersion = await h.call('PUT', `/v1/adapters/${adapterId}/aliases/next`, { token: t.token, body: { version: 5 } });
      expect(noVersion.status).toBe(404);
      expect((await h.call('DELETE', `/v1/adapters/${adapterId}/aliases/prod`, { token: t.token })).status).toBe(204);
      expect((await h.call('DELETE', `/v1/adapters/${adapterId}/aliases/prod`, { token: t.token })).status).toBe(404);
    });

    it('downloads a version and imports it back as a new adapter; refuses broken files', async () => {
      const res = await h.app.request(`/v1/adapters/${adapterId}/versions/1/file`, { headers: { authorization: `Bearer ${t.token}` } });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-disposition')).toContain('shapes-clf-v1.safetensors');
      const file = Buffer.from(await res.arrayBuffer());
      expect(file.length).toBe(Number(res.headers.get('content-length')));
      const imp = await h.call('POST', '/v1/adapters/import?name=copy', { token: t.token, body: file, headers: { 'content-type': 'application/octet-stream' } });
      expect(imp.status).toBe(201);
      expect(imp.body).toMatchObject({ created: true, adapter: { name: 'copy', status: 'ready' }, version: { version: 1, source: 'imported' } });
      expect(imp.body.version.labels).toEqual((await h.call('GET', `/v1/adapters/${adapterId}/versions/1`, { token: t.token })).body.labels);
      // Multipart, into the same adapter: version 2.
      const form = new FormData();
      form.append('name', 'copy');
      form.append('file', new Blob([file]), 'a.safetensors');
      const imp2 = await h.call('POST', '/v1/adapters/import', { token: t.token, body: form as never });
      expect([imp2.status, imp2.body.created, imp2.body.version.version]).toEqual([201, false, 2]);
      const broken = await h.call('POST', '/v1/adapters/import?name=broken', { token: t.token, body: file.subarray(0, 100), headers: { 'content-type': 'application/octet-stream' } });
      expect([broken.status, broken.body.error.code]).toEqual([400, 'invalid_adapter']);
      expect((await h.call('GET', '/v1/adapters/broken', { token: t.token })).status).toBe(404);
      // The golden adapter belongs to this very backbone too: it imports (it is the authors' layout).
      const golden = await readFile(fixturePath('adapter.safetensors'));
      const g = await h.call('POST', '/v1/adapters/import?name=golden', { token: t.token, body: golden, headers: { 'content-type': 'application/octet-stream' } });
      expect(g.status).toBe(201);
      const uuidName = await h.call('POST', '/v1/adapters/import?name=0b5e3f0e-8d1c-4a6e-9f0f-2d7c1f9a2b34', { token: t.token, body: golden });
      expect(uuidName.status).toBe(400);
    });

    it('cancels a queued or running job; cancelling a finished one is invalid_state', async () => {
      const r = await h.call('POST', `/v1/adapters/${adapterId}/train`, { token: t.token, body: { datasetId, hyperparameters: { ...FAST, epochs: 200 } } });
      expect(r.status).toBe(202);
      const c = await h.call('POST', `/v1/jobs/${r.body.job.id}/cancel`, { token: t.token });
      expect(c.status).toBe(200);
      expect(c.body.status === 'cancelled' || c.body.cancelRequested).toBe(true);
      const events = await readSse(await h.app.request(`/v1/jobs/${r.body.job.id}/events`, { headers: { authorization: `Bearer ${t.token}` } }));
      expect(JSON.parse(events.at(-1)!.data).status).toBe('cancelled');
      const finished = await h.call('POST', `/v1/jobs/${jobId}/cancel`, { token: t.token });
      expect([finished.status, finished.body.error.code]).toEqual([409, 'invalid_state']);
      const badTrain = await h.call('POST', '/v1/adapters', { token: t.token, body: { datasetId, name: 'x', hyperparameters: { lr: -1 } } });
      expect([badTrain.status, badTrain.body.error.code]).toEqual([400, 'validation_failed']);
      const noSet = await h.call('POST', '/v1/adapters', { token: t.token, body: { datasetId: '00000000-0000-4000-8000-000000000000', name: 'x' } });
      expect(noSet.status).toBe(404);
    });

    it('deletes an adapter with its versions and files', async () => {
      const before = (await h.call('GET', `/v1/tenants/${t.id}`, { token: 'x' })).status;
      expect(before).toBe(401);
      const usage0 = (await h.admin('GET', `/v1/tenants/${t.id}`)).body.usage;
      expect((await h.call('DELETE', '/v1/adapters/copy', { token: t.token })).status).toBe(204);
      expect((await h.call('GET', '/v1/adapters/copy', { token: t.token })).status).toBe(404);
      const usage1 = (await h.admin('GET', `/v1/tenants/${t.id}`)).body.usage;
      expect(usage1.adapters).toBe(usage0.adapters - 1);
      expect(usage1.bytes).toBeLessThan(usage0.bytes);
    });
  });
});
