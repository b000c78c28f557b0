/**
 * A database outage seen through the API: classify, listing data sets and uploading answer 503
 * 'unavailable' with a Retry-After (never 500 'internal'), whichever way the driver reports it —
 * on PostgreSQL the test's own database refusing connections with its sessions terminated, on
 * PGlite a closed handle — and, on PostgreSQL, the same calls succeed again once it is back.
 */
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeShapesDataset, zipClassFolders } from '../helpers/datasets.js';
import { dbTargets, setConnectable } from '../helpers/db.js';
import { JobQueue } from '../../src/jobs/queue.js';
import { fixturePath, startHarness, type Harness, type Reply } from './harness.js';
import { readSse } from './sse.js';

describe.each(dbTargets())('database outage on %s', (kind) => {
  let h: Harness;
  let t: { id: string; token: string };
  let image: string;
  let zip: Buffer;
  beforeAll(async () => {
    h = await startHarness({ kind, env: { AUTH_CACHE_TTL_MS: '0' } });
    t = await h.tenant('outage-co');
    const adapter = await readFile(fixturePath('adapter.safetensors'));
    const r = await h.call('POST', '/v1/adapters/import?name=golden', { token: t.token, body: adapter, headers: { 'content-type': 'application/octet-stream' } });
    expect(r.status).toBe(201);
    image = (await readFile(fixturePath('input-0.png'))).toString('base64');
    zip = await zipClassFolders(await makeShapesDataset({ classes: 2, perClass: 3, size: 16, seed: 3 }));
  });
  afterAll(async () => {
    if (kind === 'postgres') await setConnectable(h.db, true).catch(() => {});
    await h?.close();
  });

  let uploads = 0;
  const calls: Record<string, () => Promise<Reply>> = {
    classify: () => h.call('POST', '/v1/adapters/golden/classify', { token: t.token, body: { images: [image] } }),
    list: () => h.call('GET', '/v1/datasets', { token: t.token }),
    upload: () =>
      h.call('POST', `/v1/datasets?name=up-${++uploads}`, { token: t.token, body: zip, headers: { 'content-type': 'application/zip' } }),
  };
  const ok: Record<string, number> = { classify: 200, list: 200, upload: 201 };

  const expectUnavailable = (name: string, r: Reply) => {
    expect([name, r.status, r.body?.error?.code]).toEqual([name, 503, 'unavailable']);
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(r.text).not.toMatch(/dtl_t_|pglite|postgres|ECONN|select/i);
  };

  /** A job event stream opened before the outage (a job of a kind no worker runs, so it stays queued and the stream polls). */
  let stream: Response;

  it('works before the outage', async () => {
    for (const [name, call] of Object.entries(calls)) expect([name, (await call()).status]).toEqual([name, ok[name]]);
    const job = await JobQueue.of(h.deps).enqueue({ kind: 'outage-probe', tenantId: t.id });
    stream = await h.app.request(`/v1/jobs/${job.id}/events`, { headers: { authorization: `Bearer ${t.token}` } });
    expect(stream.status).toBe(200);
  });

  it('answers 503 unavailable with Retry-After while the database is down', async () => {
    if (kind === 'postgres') await setConnectable(h.db, false);
    else await h.deps.database.close();
    for (const [name, call] of Object.entries(calls)) expectUnavailable(name, await call());
    // Asked again: still a clean 503 (no stale state turns it into a 500).
    for (const [name, call] of Object.entries(calls)) expectUnavailable(name, await call());
    // The open event stream reports the outage in-band with the same code, not as 'internal'.
    const events = await readSse(stream, (e) => e.event === 'error', 15_000);
    const error = JSON.parse(events.find((e) => e.event === 'error')!.data) as { error: { code: string; message: string } };
    expect(error.error.code).toBe('unavailable');
    expect(error.error.message).not.toMatch(/dtl_t_|pglite|postgres|ECONN|select/i);
  });

  // PostgreSQL only: PGlite's database cannot be made to refuse connections and come back.
  if (kind === 'postgres') {
    it('recovers once the database accepts connections again', async () => {
      await setConnectable(h.db, true);
      for (const [name, call] of Object.entries(calls)) {
        // A pooled session terminated during the outage may fail one more call — as a 503.
        let r = await call();
        for (let i = 0; i < 20 && r.status !== ok[name]; i++) {
          expectUnavailable(name, r);
          await new Promise((res) => setTimeout(res, 100));
          r = await call();
        }
        expect([name, r.status]).toEqual([name, ok[name]]);
      }
    });
  }
});
