/**
 * Cursor pagination on both database targets: following nextCursor (or the Link header) visits
 * every item once, in order, also when rows share a millisecond or differ only in microseconds
 * (created_at has microseconds, a cursor milliseconds); bad cursors are 400; offset still works.
 */
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dbTargets } from '../helpers/db.js';
import { startHarness, type Harness } from './harness.js';

describe.each(dbTargets())('cursor pagination (%s)', (kind) => {
  let h: Harness;
  let t: { id: string; token: string };

  beforeAll(async () => {
    h = await startHarness({ kind });
    t = await h.tenant('pager');
    // Twelve jobs: four in one millisecond, four microseconds apart, four a second apart.
    await h.db.db.execute(sql`insert into jobs (kind, tenant_id, created_at)
      select 'train', ${t.id}::uuid, t from (values
        (timestamptz '2026-01-01 00:00:00.123'), (timestamptz '2026-01-01 00:00:00.123'), (timestamptz '2026-01-01 00:00:00.123'), (timestamptz '2026-01-01 00:00:00.123'),
        (timestamptz '2026-01-01 00:00:01.000001'), (timestamptz '2026-01-01 00:00:01.000002'), (timestamptz '2026-01-01 00:00:01.000003'), (timestamptz '2026-01-01 00:00:01.000004'),
        (timestamptz '2026-01-01 00:00:02'), (timestamptz '2026-01-01 00:00:03'), (timestamptz '2026-01-01 00:00:04'), (timestamptz '2026-01-01 00:00:05')
      ) as v(t)`);
  });
  afterAll(() => h?.close());

  const jobs = (query: string) => h.call('GET', `/v1/jobs${query}`, { token: t.token });

  it('following nextCursor visits every job once, newest first, and the Link header says the same', async () => {
    const all = await jobs('?limit=100');
    expect(all.body.items).toHaveLength(12);
    expect(all.body.nextCursor).toBeNull();
    expect(all.headers.get('link')).toBeNull();
    const seen: string[] = [];
    let query = '?limit=3';
    for (let pages = 0; pages < 10; pages++) {
      const r = await jobs(query);
      expect(r.status).toBe(200);
      seen.push(...r.body.items.map((j: { id: string }) => j.id));
      if (r.body.nextCursor === null) {
        expect(r.headers.get('link')).toBeNull();
        break;
      }
      const link = r.headers.get('link')!;
      expect(link).toBe(`<http://localhost/v1/jobs?limit=3&cursor=${r.body.nextCursor}>; rel="next"`);
      query = `?limit=3&cursor=${encodeURIComponent(r.body.nextCursor)}`;
    }
    expect(seen).toEqual(all.body.items.map((j: { id: string }) => j.id));
    const times = all.body.items.map((j: { createdAt: string }) => j.createdAt);
    expect([...times].sort().reverse()).toEqual(times);
  });

  it('tenants page oldest first through the same cursors', async () => {
    for (const n of ['p1', 'p2', 'p3']) expect((await h.admin('POST', '/v1/tenants', { name: n })).status).toBe(201);
    const all = (await h.admin('GET', '/v1/tenants?limit=1000')).body.items.map((x: { id: string }) => x.id);
    const first = await h.admin('GET', '/v1/tenants?limit=2');
    const second = await h.admin('GET', `/v1/tenants?limit=2&cursor=${first.body.nextCursor}`);
    expect([...first.body.items, ...second.body.items].map((x: { id: string }) => x.id)).toEqual(all.slice(0, 4));
  });

  it('a cursor that is not one, or a cursor with offset, is 400; offset alone still works (deprecated)', async () => {
    for (const bad of ['nope', Buffer.from('123.not-a-uuid').toString('base64url'), '%00']) {
      const r = await jobs(`?cursor=${bad}`);
      expect(r.status, bad).toBe(400);
      expect(r.body.error.code).toBe('validation_failed');
    }
    const first = await jobs('?limit=2');
    expect((await jobs(`?limit=2&offset=2&cursor=${first.body.nextCursor}`)).status).toBe(400);
    const all = (await jobs('?limit=100')).body.items.map((j: { id: string }) => j.id);
    const byOffset = await jobs('?limit=2&offset=2');
    expect(byOffset.body.items.map((j: { id: string }) => j.id)).toEqual(all.slice(2, 4));
    expect(byOffset.body.nextCursor).not.toBeNull();
    // A Link header built from an offset page continues by cursor, without the offset.
    expect(byOffset.headers.get('link')).not.toContain('offset=');
  });

  it('another tenant following this tenant\'s cursor sees only its own rows', async () => {
    const other = await h.tenant('pager-other');
    const first = await jobs('?limit=2');
    const r = await h.call('GET', `/v1/jobs?cursor=${first.body.nextCursor}`, { token: other.token });
    expect(r.status).toBe(200);
    expect(r.body.items).toEqual([]);
  });
});
