/**
 * Issue 11, item 10, over HTTP: every name a request carries (tenant, API key, data set, adapter,
 * alias) with a bidirectional or control character is a 400 validation_failed that says why, and
 * nothing is created; names are stored in NFC.
 */
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeShapesDataset, zipClassFolders } from '../helpers/datasets.js';
import { fixturePath, startHarness, type Harness } from './harness.js';

const RLO = '\u202E';
let h: Harness;
let t: { id: string; token: string };

beforeAll(async () => {
  h = await startHarness();
  t = await h.tenant('names');
});
afterAll(() => h?.close());

const expectRefused = (r: { status: number; body: { error: { code: string; message: string } } }, what: string, because = /U\+202E/) => {
  expect(r.status, what).toBe(400);
  expect(r.body.error.code, what).toBe('validation_failed');
  expect(r.body.error.message, what).toMatch(because);
};

describe('names with bidirectional or control characters', () => {
  it('tenant and API key names (admin and self-service)', async () => {
    const before = (await h.admin('GET', '/v1/tenants')).body.items.length;
    expectRefused(await h.admin('POST', '/v1/tenants', { name: `acme${RLO}corp` }), 'tenant');
    expectRefused(await h.admin('POST', '/v1/tenants', { name: 'acme\u0000' }), 'tenant NUL', /U\+0000/);
    expect((await h.admin('GET', '/v1/tenants')).body.items.length).toBe(before);
    expectRefused(await h.admin('POST', `/v1/tenants/${t.id}/keys`, { name: `ci${RLO}`, scopes: ['classify'] }), 'key (admin)');
    expectRefused(await h.call('POST', '/v1/keys', { token: t.token, body: { name: `deploy\u2067bot`, scopes: ['classify'] } }), 'key (self)', /U\+2067/);
    expectRefused(await h.call('POST', '/v1/keys', { token: t.token, body: { name: 'x\u200Ey', scopes: ['classify'] } }), 'key LRM', /U\+200E/);
    expect((await h.call('GET', '/v1/keys', { token: t.token })).body.items.length).toBe(1);
  });

  it('data set, adapter and alias names', async () => {
    const zip = await zipClassFolders(await makeShapesDataset({ classes: 2, perClass: 2, size: 16, seed: 1 }));
    const up = (name: string) =>
      h.call('POST', `/v1/datasets?name=${encodeURIComponent(name)}`, { token: t.token, body: new Uint8Array(zip), headers: { 'content-type': 'application/zip' } });
    expectRefused(await up(`photos${RLO}gpj.exe`), 'data set');
    expectRefused(await up('photos\u061C'), 'data set ALM', /U\+061C/);
    expect((await h.call('GET', '/v1/datasets', { token: t.token })).body.items).toEqual([]);

    const ds = await up('photos');
    expect(ds.status).toBe(201);
    const train = await h.call('POST', '/v1/adapters', { token: t.token, body: { datasetId: ds.body.id, name: `model${RLO}` } });
    expect(train.status).toBe(400);
    expect(train.body.error.code).toBe('validation_failed');
    const file = await readFile(fixturePath('adapter.safetensors'));
    const imp = (name: string) =>
      h.call('POST', `/v1/adapters/import?name=${encodeURIComponent(name)}`, { token: t.token, body: new Uint8Array(file), headers: { 'content-type': 'application/octet-stream' } });
    expect((await imp(`m${RLO}`)).body.error.code).toBe('validation_failed');
    const ok = await imp('m');
    expect(ok.status).toBe(201);
    const alias = await h.call('PUT', `/v1/adapters/m/aliases/${encodeURIComponent(`prod${RLO}`)}`, { token: t.token, body: { version: 1 } });
    expect(alias.status).toBe(400);
    expect(alias.body.error.code).toBe('validation_failed');
    expect((await h.call('GET', '/v1/adapters', { token: t.token })).body.items.map((a: { name: string }) => a.name)).toEqual(['m']);
  });

  it('names are stored in NFC', async () => {
    const tenant = await h.admin('POST', '/v1/tenants', { name: 'cafe\u0301' });
    expect(tenant.status).toBe(201);
    expect(tenant.body.name).toBe('café');
    const key = await h.call('POST', '/v1/keys', { token: t.token, body: { name: 'cle\u0301', scopes: ['classify'] } });
    expect(key.body.key.name).toBe('clé');
    const zip = await zipClassFolders(await makeShapesDataset({ classes: 2, perClass: 2, size: 16, seed: 2 }));
    const ds = await h.call('POST', `/v1/datasets?name=${encodeURIComponent('the\u0301')}`, { token: t.token, body: new Uint8Array(zip), headers: { 'content-type': 'application/zip' } });
    expect(ds.body.name).toBe('thé');
  });
});
