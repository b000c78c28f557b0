/**
 * /metrics is not a window onto tenants: with METRICS_TOKEN set it answers only that bearer token
 * (401 + WWW-Authenticate otherwise); per-tenant series exist only with METRICS_TENANT_LABELS
 * (which needs the token); by default every tenant-capable series is an all-tenants total.
 */
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { fixturePath, startHarness, type Harness } from './harness.js';

const TOKEN = 'metrics-token-0123456789abcdef';

async function classifyOnce(h: Harness, token: string): Promise<void> {
  const adapter = await readFile(fixturePath('adapter.safetensors'));
  const imp = await h.call('POST', '/v1/adapters/import?name=golden', { token, body: adapter, headers: { 'content-type': 'application/octet-stream' } });
  expect(imp.status).toBe(201);
  const image = (await readFile(fixturePath('input-0.png'))).toString('base64');
  expect((await h.call('POST', '/v1/adapters/golden/classify', { token, body: { images: [image] } })).status).toBe(200);
}

describe('/metrics by default (no token, no per-tenant series)', () => {
  let h: Harness;
  let t: { id: string; token: string };
  beforeAll(async () => {
    h = await startHarness({ env: { RATE_LIMIT_RPS: '0.1', RATE_LIMIT_BURST: '4' } });
    t = await h.tenant('quiet-co');
    await classifyOnce(h, t.token);
    for (let i = 0; i < 4; i++) await h.call('GET', '/v1/me', { token: t.token });
  });
  afterAll(() => h?.close());

  it('is open, and names no tenant: images, refusals and queue depth are all-tenants totals', async () => {
    const r = await h.call('GET', '/metrics');
    expect(r.status).toBe(200);
    expect(r.text).not.toContain(t.id);
    expect(r.text).toMatch(/dtl_classify_images_total\{tenant=""\} 1/);
    expect(r.text).toMatch(/dtl_rejections_total\{code="rate_limited",tenant=""\} [1-9]/);
    expect(r.text).toMatch(/^dtl_classify_queue_depth 0$/m);
    expect(r.text).not.toMatch(/^dtl_classify_queue_depth_by_tenant\{/m);
  });
});

describe('/metrics with METRICS_TOKEN and METRICS_TENANT_LABELS', () => {
  let h: Harness;
  let t: { id: string; token: string };
  beforeAll(async () => {
    h = await startHarness({ env: { METRICS_TOKEN: TOKEN, METRICS_TENANT_LABELS: 'true' } });
    t = await h.tenant('loud-co');
    await classifyOnce(h, t.token);
  });
  afterAll(() => h?.close());

  it('refuses a scrape without the token: 401 unauthenticated with WWW-Authenticate: Bearer', async () => {
    for (const token of [undefined, 'wrong-token-0123456789', t.token]) {
      const r = await h.call('GET', '/metrics', { token });
      expect([r.status, r.body?.error?.code]).toEqual([401, 'unauthenticated']);
      expect(r.headers.get('www-authenticate')).toMatch(/^Bearer\b/);
      expect(r.text).not.toContain('dtl_');
    }
  });

  it('answers the token, with per-tenant series', async () => {
    const r = await h.call('GET', '/metrics', { token: TOKEN });
    expect(r.status).toBe(200);
    expect(r.text).toContain(`dtl_classify_images_total{tenant="${t.id}"} 1`);
    // Health probes stay open.
    expect((await h.call('GET', '/healthz')).status).toBe(200);
    expect((await h.call('GET', '/readyz')).status).toBe(200);
  });

  it('per-tenant series without a token are refused at start', () => {
    expect(() => loadConfig({ METRICS_TENANT_LABELS: 'true' })).toThrow(/METRICS_TOKEN/);
    expect(() => loadConfig({ METRICS_TOKEN: 'short' })).toThrow(/METRICS_TOKEN/);
    expect(loadConfig({}).METRICS_TENANT_LABELS).toBe(false);
  });
});
