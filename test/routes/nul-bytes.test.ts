/**
 * PostgreSQL text cannot hold NUL: an id, a name or a description carrying one is the caller's
 * mistake (400 validation_failed), never a 500 from the database (found by the chaos corpus).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dbTargets } from '../helpers/db.js';
import { startHarness, type Harness, type Reply } from './harness.js';

describe.each(dbTargets())('NUL and control characters (%s)', (kind) => {
  let h: Harness;
  let t: { token: string };

  beforeAll(async () => {
    h = await startHarness({ kind });
    t = await h.tenant('nul');
  });
  afterAll(async () => {
    await h?.close();
  });

  const invalid = (r: Reply) => expect([r.status, r.body?.error?.code], r.text).toEqual([400, 'validation_failed']);

  it('refuses a NUL or control character in a path id on every kind of resource', async () => {
    for (const path of ['/v1/adapters/%00abc', '/v1/adapters/a%00b/versions', '/v1/datasets/%00', '/v1/jobs/x%01y', '/v1/keys/%7F']) {
      invalid(await h.call('GET', path, { token: t.token }));
    }
    invalid(await h.call('POST', '/v1/adapters/%00abc/classify', { token: t.token, body: { images: ['AAAA'] } }));
  });

  it('refuses a NUL in a free-text field the database would store', async () => {
    const r = await h.call('POST', '/v1/adapters', { token: t.token, body: { name: 'nul-desc', datasetId: '00000000-0000-4000-8000-000000000000', description: 'a\u0000b' } });
    expect(r.status, r.text).toBe(400);
  });
});
