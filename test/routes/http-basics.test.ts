/**
 * What every route shares: the error shape and request id, 5xx without internals (but logged
 * with the request id), structured request logs, body limits and content types, quotas on
 * imports, unknown routes, and the shutdown gate (readiness fails, requests refused).
 */
import { readFile } from 'node:fs/promises';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listAll } from '../../src/storage/index.js';
import { ADMIN_TOKEN, fixturePath, startHarness, type Harness } from './harness.js';

type Line = Record<string, unknown>;

describe('errors, logs and limits', () => {
  let h: Harness;
  const lines: Line[] = [];
  let t: { id: string; token: string };

  beforeAll(async () => {
    const log = pino(
      { level: 'debug', base: { service: 'dtl-host' }, formatters: { level: (label) => ({ level: label }) } },
      { write: (s: string) => void lines.push(JSON.parse(s) as Line) },
    );
    h = await startHarness({ log, env: { QUOTA_ADAPTERS: '1', QUOTA_BYTES: '20000' } });
    t = await h.tenant('basics');
  });
  afterAll(async () => {
    await h?.close();
  });

  it('logs one structured line per request: request id, tenant id, route, status, latency', async () => {
    const r = await h.call('GET', '/v1/me', { token: t.token, headers: { 'x-request-id': 'trace-me-123' } });
    expect(r.headers.get('x-request-id')).toBe('trace-me-123');
    const line = lines.find((l) => l.msg === 'request' && l.requestId === 'trace-me-123');
    expect(line).toMatchObject({ level: 'info', method: 'GET', route: '/v1/me', path: '/v1/me', status: 200, tenantId: t.id });
    expect(line?.latencyMs).toEqual(expect.any(Number));
    // A request id that could forge log content is replaced.
    const bad = await h.call('GET', '/healthz', { headers: { 'x-request-id': 'a b;c' } });
    expect(bad.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('answers unknown routes, wrong content types and oversized JSON with the error shape', async () => {
    const none = await h.call('GET', '/v1/nothing-here');
    expect(none.status).toBe(404);
    expect(none.body).toEqual({ error: { code: 'not_found', message: 'no route for GET /v1/nothing-here', requestId: none.headers.get('x-request-id') } });
    const text = await h.call('POST', '/v1/tenants', { token: ADMIN_TOKEN, body: 'name=x', headers: { 'content-type': 'text/plain' } });
    expect([text.status, text.body.error.code]).toEqual([415, 'unsupported_media_type']);
    const big = await h.call('POST', '/v1/tenants', { token: ADMIN_TOKEN, body: { name: 'x'.repeat(2 * 1024 * 1024) } });
    expect([big.status, big.body.error.code]).toEqual([413, 'payload_too_large']);
    const malformed = await h.call('POST', '/v1/tenants', { token: ADMIN_TOKEN, body: '{"name":', headers: { 'content-type': 'application/json' } });
    expect([malformed.status, malformed.body.error.code]).toEqual([400, 'bad_request']);
    const badQuery = await h.call('GET', '/v1/datasets?limit=0', { token: t.token });
    expect(badQuery.status).toBe(400);
    expect(badQuery.body.error.details.issues[0].path).toBe('limit');
  });

  it('enforces the adapter and byte quotas on import', async () => {
    const file = await readFile(fixturePath('adapter.safetensors'));
    const send = (name: string) => h.call('POST', `/v1/adapters/import?name=${name}`, { token: t.token, body: file, headers: { 'content-type': 'application/octet-stream' } });
    expect((await send('first')).status).toBe(201);
    const second = await send('second'); // QUOTA_ADAPTERS=1
    expect([second.status, second.body.error.code, second.body.error.details.kind]).toEqual([429, 'quota_exceeded', 'adapters']);
    // More versions of the same adapter are fine until the bytes run out (QUOTA_BYTES=20000).
    let last = await send('first');
    for (let i = 0; i < 20 && last.status === 201; i++) last = await send('first');
    expect([last.status, last.body.error.code, last.body.error.details.kind]).toEqual([429, 'quota_exceeded', 'bytes']);
    expect((await h.admin('GET', `/v1/tenants/${t.id}`)).body.usage.bytes).toBeLessThanOrEqual(20000);
  });

  it('reports a missing adapter file as a storage error (503), not as a missing object', async () => {
    const versions = await h.call('GET', '/v1/adapters/first/versions', { token: t.token });
    const keys = await listAll(h.deps.blobs, `tenants/${t.id}/adapters/`);
    await h.deps.blobs.delete(keys[0].key);
    const missing = await Promise.all(
      versions.body.items.map((v: { version: number }) => h.call('GET', `/v1/adapters/first/versions/${v.version}/file`, { token: t.token })),
    );
    // Exactly the version whose file is gone fails; the others still download.
    expect(missing.filter((r) => r.status === 200)).toHaveLength(versions.body.items.length - 1);
    const failed = missing.find((r) => r.status !== 200);
    expect([failed?.status, failed?.body.error.code]).toEqual([503, 'storage_error']);
    expect(failed?.body.error.message).not.toContain('tenants/');
  });

  it('answers 5xx without internals, and logs them with the request id', async () => {
    await h.deps.database.close(); // a real fault: every query fails from here on
    // (A route that reads the database: the key itself is still trusted from the auth cache.)
    const r = await h.call('GET', '/v1/adapters', { token: t.token, headers: { 'x-request-id': 'boom-1' } });
    expect(r.status).toBeGreaterThanOrEqual(500);
    expect(r.body.error.requestId).toBe('boom-1');
    expect(['internal', 'unavailable']).toContain(r.body.error.code);
    expect(r.body.error.message).toMatch(/^(internal error|the service is temporarily unavailable; retry later)$/);
    expect(r.body.error.details).toBeUndefined();
    const logged = lines.find((l) => l.requestId === 'boom-1' && l.level === 'error');
    expect(logged?.msg).toBe('request failed');
    expect(JSON.stringify(logged?.err)).toMatch(/closed|not open|terminated|ended/i);
  });
});

describe('shutdown gate', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h?.close();
  });

  it('fails readiness and refuses requests once shutdown begins; liveness and metrics keep answering', async () => {
    const t = await h.tenant('gate');
    expect((await h.call('GET', '/readyz')).status).toBe(200);
    h.shutdown.begin();
    const ready = await h.call('GET', '/readyz');
    expect(ready.status).toBe(503);
    expect(ready.body).toMatchObject({ status: 'not_ready', checks: { shutdown: 'shutting down', database: 'ok' } });
    const refused = await h.call('GET', '/v1/me', { token: t.token });
    expect([refused.status, refused.body.error.code]).toEqual([503, 'unavailable']);
    expect(refused.headers.get('connection')).toBe('close');
    expect(refused.headers.get('retry-after')).toBe('1');
    expect((await h.call('GET', '/healthz')).status).toBe(200);
    expect((await h.call('GET', '/metrics')).status).toBe(200);
  });
});
