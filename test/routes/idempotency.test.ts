/**
 * Idempotency-Key on creating POSTs, on every database target: a retry with the same key and
 * request returns the first answer and creates nothing; another request under the key is 422
 * idempotency_key_reused; keys are per tenant; a failed request frees its key; expired keys and
 * abandoned claims are replaced.
 */
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeShapesDataset, zipClassFolders } from '../helpers/datasets.js';
import { dbTargets } from '../helpers/db.js';
import { ADMIN_TOKEN, startHarness, type Harness } from './harness.js';

describe.each(dbTargets())('Idempotency-Key (%s)', (kind) => {
  let h: Harness;
  let a: { id: string; token: string };
  let b: { id: string; token: string };
  let zip: Buffer;
  let datasetId: string;

  beforeAll(async () => {
    h = await startHarness({ kind });
    a = await h.tenant('idem-a');
    b = await h.tenant('idem-b');
    zip = await zipClassFolders(await makeShapesDataset({ classes: 2, perClass: 4, size: 16, seed: 3 }));
    const up = await h.call('POST', '/v1/datasets?name=d', { token: a.token, body: zip, headers: { 'content-type': 'application/zip' } });
    expect(up.status).toBe(201);
    datasetId = up.body.id;
  });
  afterAll(() => h?.close());

  const train = (token: string, key: string | undefined, body: unknown) =>
    h.call('POST', '/v1/adapters', { token, body, headers: key === undefined ? {} : { 'idempotency-key': key } });
  const jobCount = async (token: string) => (await h.call('GET', '/v1/jobs', { token })).body.items.length as number;

  it('the same key and body twice: the first answer again, one job', async () => {
    const before = await jobCount(a.token);
    const first = await train(a.token, 'train-1', { name: 'x', datasetId });
    expect(first.status).toBe(202);
    expect(first.headers.get('idempotent-replayed')).toBeNull();
    const again = await train(a.token, 'train-1', { name: 'x', datasetId });
    expect(again.status).toBe(202);
    expect(again.text).toBe(first.text);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(await jobCount(a.token)).toBe(before + 1);
    // Without a key, a repeat is a new request (the behaviour the key exists to prevent).
    await train(a.token, undefined, { name: 'x', datasetId });
    expect(await jobCount(a.token)).toBe(before + 2);
  });

  it('the same key with another body is 422 idempotency_key_reused and starts nothing', async () => {
    await train(a.token, 'train-2', { name: 'y', datasetId });
    const before = await jobCount(a.token);
    const other = await train(a.token, 'train-2', { name: 'z', datasetId });
    expect(other.status).toBe(422);
    expect(other.body.error.code).toBe('idempotency_key_reused');
    // Another route under the same key is another request too.
    const key = await h.call('POST', '/v1/keys', { token: a.token, body: { name: 'k', scopes: ['classify'] }, headers: { 'idempotency-key': 'train-2' } });
    expect(key.status).toBe(422);
    expect(await jobCount(a.token)).toBe(before);
  });

  it('keys are per tenant: another tenant with the same key gets its own answer', async () => {
    const ka = await h.call('POST', '/v1/keys', { token: a.token, body: { name: 'same', scopes: ['classify'] }, headers: { 'idempotency-key': 'shared-key' } });
    const kb = await h.call('POST', '/v1/keys', { token: b.token, body: { name: 'same', scopes: ['classify'] }, headers: { 'idempotency-key': 'shared-key' } });
    expect([ka.status, kb.status]).toEqual([201, 201]);
    expect(kb.body.key.id).not.toBe(ka.body.key.id);
    expect(kb.headers.get('idempotent-replayed')).toBeNull();
    const again = await h.call('POST', '/v1/keys', { token: b.token, body: { name: 'same', scopes: ['classify'] }, headers: { 'idempotency-key': 'shared-key' } });
    expect(again.body.key.id).toBe(kb.body.key.id);
  });

  it('a data set upload retried with its key is stored once', async () => {
    const send = () =>
      h.call('POST', '/v1/datasets?name=once', { token: b.token, body: zip, headers: { 'content-type': 'application/zip', 'idempotency-key': 'up-1' } });
    const first = await send();
    const again = await send();
    expect(first.status).toBe(201);
    expect(again.body.id).toBe(first.body.id);
    const list = await h.call('GET', '/v1/datasets', { token: b.token });
    expect(list.body.items.filter((d: { name: string }) => d.name === 'once')).toHaveLength(1);
  });

  it('admin: creating a tenant twice with one key creates one tenant', async () => {
    const send = () => h.call('POST', '/v1/tenants', { token: ADMIN_TOKEN, body: { name: 'idem-t' }, headers: { 'idempotency-key': 'tenant-1' } });
    const first = await send();
    const again = await send();
    expect(first.status).toBe(201);
    expect(again.status).toBe(201);
    expect(again.body.id).toBe(first.body.id);
  });

  it('a failed request frees its key; an expired key is new again', async () => {
    const missing = await train(a.token, 'free-1', { name: 'w', datasetId: '00000000-0000-4000-8000-000000000000' });
    expect(missing.status).toBe(404);
    const ok = await train(a.token, 'free-1', { name: 'w', datasetId });
    expect(ok.status).toBe(202);
    await h.db.db.execute(sql`update idempotency_keys set expires_at = now() - interval '1 second' where key = 'free-1'`);
    const fresh = await train(a.token, 'free-1', { name: 'w', datasetId });
    expect(fresh.status).toBe(202);
    expect(fresh.body.job.id).not.toBe(ok.body.job.id);
  });

  it('while the first request runs, a retry is 409 idempotency_key_in_use; an abandoned claim is taken over', async () => {
    await h.db.db.execute(sql`insert into idempotency_keys (scope, key, tenant_id, fingerprint, expires_at) values (${a.id}, 'busy-1', ${a.id}, 'x', now() + interval '1 hour')`);
    const busy = await train(a.token, 'busy-1', { name: 'v', datasetId });
    expect(busy.status).toBe(409);
    expect(busy.body.error.code).toBe('idempotency_key_in_use');
    expect(busy.headers.get('retry-after')).toBe('1');
    await h.db.db.execute(sql`update idempotency_keys set created_at = now() - interval '2 hours' where key = 'busy-1'`);
    expect((await train(a.token, 'busy-1', { name: 'v', datasetId })).status).toBe(202);
  });

  it('a key that is not 1–255 printable ASCII characters is 400', async () => {
    for (const key of ['', 'x'.repeat(256), 'naïve', 'a b']) {
      const r = await train(a.token, key, { name: 'u', datasetId });
      expect(r.status, JSON.stringify(key)).toBe(400);
    }
  });
});
