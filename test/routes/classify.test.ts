/**
 * Classify and fan-out through HTTP on the golden fixture (an adapter made with the authors'
 * PyTorch code and its expected probabilities), plus the error codes, limits and metrics of the
 * classify path.
 */
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixturePath, startHarness, type Harness } from './harness.js';

interface Case {
  image: string;
  probabilities: number[];
  top1: string;
}

let h: Harness;
let t: { id: string; token: string };
let images: Buffer[];
let cases: Case[];
const LABELS = ['cat', 'dog', 'fox'];
const METRICS_TOKEN = 'metrics-token-0123456789abcdef';

beforeAll(async () => {
  h = await startHarness({ env: { CLASSIFY_MAX_BYTES: '20000', METRICS_TOKEN, METRICS_TENANT_LABELS: 'true' } });
  t = await h.tenant('classify-co');
  cases = (JSON.parse(await readFile(fixturePath('expected.json'), 'utf8')) as { cases: Case[] }).cases;
  images = await Promise.all(cases.map((c) => readFile(fixturePath(c.image))));
  const adapter = await readFile(fixturePath('adapter.safetensors'));
  const r = await h.call('POST', '/v1/adapters/import?name=golden', { token: t.token, body: adapter, headers: { 'content-type': 'application/octet-stream' } });
  expect(r.status).toBe(201);
});
afterAll(async () => {
  await h?.close();
});

function probsOf(answer: { predictions: Array<{ label: string; probability: number }> }): number[] {
  return LABELS.map((l) => answer.predictions.find((p) => p.label === l)?.probability ?? NaN);
}

describe('classify', () => {
  it('answers base64 JSON images with the reference probabilities', async () => {
    const r = await h.call('POST', '/v1/adapters/golden/classify', { token: t.token, body: { images: images.map((b) => b.toString('base64')), topK: 3 } });
    expect(r.status).toBe(200);
    expect(r.body.results).toHaveLength(3);
    r.body.results.forEach((res: { predictions: Array<{ label: string }>; adapter: { adapterName: string; version: number } }, i: number) => {
      expect(res.adapter).toMatchObject({ adapterName: 'golden', version: 1 });
      expect(res.predictions[0].label).toBe(cases[i].top1);
      probsOf(res as never).forEach((p, k) => expect(p).toBeCloseTo(cases[i].probabilities[k], 3));
    });
    expect(r.body.results[0].timings.totalMs).toBeGreaterThan(0);
  });

  it('answers a raw image/* body the same way, options in the query string', async () => {
    const r = await h.call('POST', '/v1/adapters/golden/classify?topK=2&alias=latest', { token: t.token, body: images[0], headers: { 'content-type': 'image/png' } });
    expect(r.status).toBe(200);
    expect(r.body.results).toHaveLength(1);
    expect(r.body.results[0].predictions).toHaveLength(2);
    expect(r.body.results[0].predictions[0].label).toBe(cases[0].top1);
    expect(r.body.results[0].predictions[0].probability).toBeCloseTo(Math.max(...cases[0].probabilities), 3);
    // The declared type only routes the body; bytes that are no image are still invalid_image.
    const lie = await h.call('POST', '/v1/adapters/golden/classify', { token: t.token, body: Buffer.from('not a png'), headers: { 'content-type': 'image/png' } });
    expect(lie.status).toBe(400);
    expect(lie.body.error.code).toBe('invalid_image');
    const other = await h.call('POST', '/v1/adapters/golden/classify', { token: t.token, body: images[0], headers: { 'content-type': 'application/octet-stream' } });
    expect(other.status).toBe(415);
  });

  it('answers multipart file parts the same way, and honours topK, threshold and data: URLs', async () => {
    const form = new FormData();
    for (const [i, b] of images.entries()) form.append('images', new Blob([b], { type: 'image/png' }), `${i}.png`);
    form.append('topK', '1');
    const r = await h.call('POST', '/v1/adapters/golden/classify', { token: t.token, body: form as never });
    expect(r.status).toBe(200);
    expect(r.body.results.map((x: { predictions: unknown[] }) => x.predictions.length)).toEqual([1, 1, 1]);
    expect(r.body.results[0].predictions[0].probability).toBeCloseTo(cases[0].probabilities[1], 3);
    const thr = await h.call('POST', '/v1/adapters/golden/classify', {
      token: t.token,
      body: { images: [`data:image/png;base64,${images[0].toString('base64')}`], threshold: 0.01 },
    });
    expect(thr.body.results[0].predictions.map((p: { label: string }) => p.label)).toEqual(['dog', 'fox']);
  });

  it('pins versions and aliases', async () => {
    const adapter = await readFile(fixturePath('adapter.safetensors'));
    await h.call('POST', '/v1/adapters/import?name=golden', { token: t.token, body: adapter, headers: { 'content-type': 'application/octet-stream' } });
    const one = images[0].toString('base64');
    const v1 = await h.call('POST', '/v1/adapters/golden/classify', { token: t.token, body: { images: [one], version: 1 } });
    const latest = await h.call('POST', '/v1/adapters/golden/classify', { token: t.token, body: { images: [one] } });
    expect([v1.body.results[0].adapter.version, latest.body.results[0].adapter.version]).toEqual([1, 2]);
    await h.call('PUT', '/v1/adapters/golden/aliases/prod', { token: t.token, body: { version: 1 } });
    const prod = await h.call('POST', '/v1/adapters/golden/classify', { token: t.token, body: { images: [one], alias: 'prod' } });
    expect(prod.body.results[0].adapter.version).toBe(1);
    const none = await h.call('POST', '/v1/adapters/golden/classify', { token: t.token, body: { images: [one], version: 9 } });
    expect(none.status).toBe(404);
    const both = await h.call('POST', '/v1/adapters/golden/classify', { token: t.token, body: { images: [one], version: 1, alias: 'prod' } });
    expect(both.status).toBe(400);
  });

  it('fans one image out to several adapters (JSON and multipart)', async () => {
    const r = await h.call('POST', '/v1/classify/fan-out', {
      token: t.token,
      body: { image: images[1].toString('base64'), adapters: ['golden', { adapter: 'golden', version: 1 }], topK: 3 },
    });
    expect(r.status).toBe(200);
    expect(r.body.results.map((x: { adapter: { version: number } }) => x.adapter.version)).toEqual([2, 1]);
    for (const res of r.body.results) probsOf(res).forEach((p, k) => expect(p).toBeCloseTo(cases[1].probabilities[k], 3));
    const form = new FormData();
    form.append('adapters', 'golden,golden');
    form.append('image', new Blob([images[2]]), 'x.png');
    const m = await h.call('POST', '/v1/classify/fan-out', { token: t.token, body: form as never });
    expect(m.status).toBe(200);
    expect(m.body.results).toHaveLength(2);
    expect(m.body.results[0].predictions[0].label).toBe(cases[2].top1);
  });

  it('refuses bad requests with stable codes', async () => {
    const one = images[0].toString('base64');
    const call = (url: string, body: unknown, headers?: Record<string, string>) => h.call('POST', url, { token: t.token, body, headers });
    const expectErr = (r: { status: number; body: { error: { code: string } } }, status: number, code: string) =>
      expect([r.status, r.body.error.code]).toEqual([status, code]);
    expectErr(await call('/v1/adapters/golden/classify', { images: ['***'] }), 400, 'validation_failed');
    expectErr(await call('/v1/adapters/golden/classify', { images: [Buffer.from('not an image').toString('base64')] }), 400, 'invalid_image');
    expectErr(await call('/v1/adapters/golden/classify', { images: [] }), 400, 'validation_failed');
    expectErr(await call('/v1/adapters/golden/classify', { images: [one], extra: 1 }), 400, 'validation_failed');
    expectErr(await call('/v1/adapters/golden/classify', '{"images": [', { 'content-type': 'application/json' }), 400, 'bad_request');
    expectErr(await call('/v1/adapters/golden/classify', 'x', { 'content-type': 'text/plain' }), 415, 'unsupported_media_type');
    expectErr(await call('/v1/adapters/nope/classify', { images: [one] }), 404, 'not_found');
    expectErr(await call('/v1/adapters/golden/classify', { images: Array(8).fill(one) }), 413, 'payload_too_large');
    expectErr(await call('/v1/classify/fan-out', { image: one, adapters: [] }), 400, 'validation_failed');
    expectErr(await call('/v1/classify/fan-out', { image: one, adapters: ['golden', 'ghost'] }), 404, 'not_found');
    const form = new FormData();
    form.append('adapters', 'golden');
    expectErr(await h.call('POST', '/v1/classify/fan-out', { token: t.token, body: form as never }), 400, 'validation_failed');
  });

  it('exports request, queue, batch, cache and image metrics', async () => {
    const r = await h.call('GET', '/metrics', { token: METRICS_TOKEN });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toContain('text/plain');
    expect(r.text).toMatch(/dtl_http_requests_total\{method="POST",route="\/v1\/adapters\/\{adapterId\}\/classify",status="200"\} \d+/);
    expect(r.text).toMatch(/dtl_http_request_duration_seconds_bucket\{[^}]*route="\/v1\/classify\/fan-out"/);
    expect(r.text).toMatch(/# TYPE dtl_classify_queue_depth gauge\ndtl_classify_queue_depth 0/);
    expect(r.text).toContain(`dtl_classify_images_total{tenant="${t.id}"}`);
    expect(r.text).toMatch(/dtl_classify_batch_size_count [1-9]/);
    expect(r.text).toMatch(/dtl_adapter_cache_hits_total [1-9]/);
    expect(r.text).toMatch(/dtl_adapter_cache_loads_total [1-9]/);
    // One key used for every request above: verified once from the database, then from memory.
    expect(r.text).toMatch(/dtl_lookup_cache_total\{cache="api_keys",result="hit"\} [1-9]/);
    expect(r.text).toMatch(/dtl_lookup_cache_total\{cache="adapter_versions",result="miss"\} [1-9]/);
    expect(r.text).toMatch(/dtl_lookup_cache_total\{cache="adapter_versions",result="hit"\} \d+/);
    expect(r.text).toContain('dtl_training_jobs');
  });
});

describe('rate limit', () => {
  let limited: Harness;
  afterAll(async () => {
    await limited?.close();
  });
  it('answers 429 rate_limited with Retry-After once the bucket is empty, per tenant', async () => {
    limited = await startHarness({ env: { RATE_LIMIT_RPS: '0.5', RATE_LIMIT_BURST: '3', METRICS_TOKEN, METRICS_TENANT_LABELS: 'true' } });
    const a = await limited.tenant('a');
    const b = await limited.tenant('b');
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await limited.call('GET', '/v1/me', { token: a.token })).status);
    expect(statuses).toEqual([200, 200, 200, 429]);
    const r = await limited.call('GET', '/v1/me', { token: a.token });
    expect(r.body.error.code).toBe('rate_limited');
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    // Another tenant has its own bucket.
    expect((await limited.call('GET', '/v1/me', { token: b.token })).status).toBe(200);
    expect((await limited.call('GET', '/metrics', { token: METRICS_TOKEN })).text).toMatch(new RegExp(`dtl_rejections_total\\{code="rate_limited",tenant="${a.id}"\\} 2`));
  });
});
