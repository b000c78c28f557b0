/**
 * Numbers that reach an int4 column (version numbers) or a query (pagination, event ids) are
 * bounded by validation: past the column's range they are 400 validation_failed, never a 500
 * from an integer overflow in the database (issue 11).
 */
import { readFile } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dbTargets } from '../helpers/db.js';
import { fixturePath, startHarness, type Harness, type Reply } from './harness.js';

const TOO_BIG = [2147483648, 1e12, 1e20];

describe.each(dbTargets())('integer bounds (%s)', (kind) => {
  let h: Harness;
  let t: { token: string };
  let image: string;

  beforeAll(async () => {
    h = await startHarness({ kind });
    t = await h.tenant('ints');
    const adapter = await readFile(fixturePath('adapter.safetensors'));
    const r = await h.call('POST', '/v1/adapters/import?name=golden', { token: t.token, body: adapter, headers: { 'content-type': 'application/octet-stream' } });
    expect(r.status).toBe(201);
    const cases = (JSON.parse(await readFile(fixturePath('expected.json'), 'utf8')) as { cases: Array<{ image: string }> }).cases;
    image = (await readFile(fixturePath(cases[0].image))).toString('base64');
  });
  afterAll(async () => {
    await h?.close();
  });

  const invalid = (r: Reply) => expect([r.status, r.body?.error?.code], r.text).toEqual([400, 'validation_failed']);
  const form = (fields: Record<string, string>) => {
    const f = new FormData();
    for (const [k, v] of Object.entries(fields)) f.append(k, v);
    f.append('image', new Blob([Buffer.from(image, 'base64')], { type: 'image/png' }), 'x.png');
    return f;
  };

  it('refuses version numbers past int4 wherever a version is given', async () => {
    for (const version of TOO_BIG) {
      const call = (url: string, body: unknown) => h.call('POST', url, { token: t.token, body: body as never });
      invalid(await call('/v1/adapters/golden/classify', { images: [image], version }));
      invalid(await call('/v1/classify/fan-out', { image, adapters: [{ adapter: 'golden', version }] }));
      invalid(await call('/v1/adapters/golden/classify', form({ version: String(version) })));
      invalid(await call('/v1/classify/fan-out', form({ adapters: JSON.stringify([{ adapter: 'golden', version }]) })));
      invalid(await h.call('PUT', '/v1/adapters/golden/aliases/prod', { token: t.token, body: { version } }));
    }
    // The largest int4 is a valid number that names no version.
    const max = await h.call('POST', '/v1/adapters/golden/classify', { token: t.token, body: { images: [image], version: 2147483647 } });
    expect([max.status, max.body.error.code]).toEqual([404, 'not_found']);
    const alias = await h.call('PUT', '/v1/adapters/golden/aliases/prod', { token: t.token, body: { version: 2147483647 } });
    expect(alias.status).toBe(404);
  });

  it('refuses pagination offsets and event ids past what the database takes', async () => {
    for (const n of TOO_BIG) {
      for (const url of ['/v1/adapters', '/v1/datasets', '/v1/jobs']) invalid(await h.call('GET', `${url}?offset=${n}`, { token: t.token }));
      invalid(await h.admin('GET', `/v1/tenants?offset=${n}`));
    }
    invalid(await h.call('GET', `/v1/jobs/${randomUUID()}/events?after=1e20`, { token: t.token }));
    const last = await h.call('GET', '/v1/adapters?offset=2147483647', { token: t.token });
    expect([last.status, last.body.items]).toEqual([200, []]);
  });
});
