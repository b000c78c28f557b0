/**
 * End to end over a real HTTP socket: the composition root (startServer) on PostgreSQL when
 * DATABASE_URL is set (else the embedded database) and an S3 blob store (s3rver). One tenant's
 * whole path: create tenant → key → upload a data set → train → watch SSE to completion →
 * classify → fan-out → download the adapter → import it as a new adapter → same predictions.
 */
import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/server.js';
import { listAll } from '../../src/storage/index.js';
import { makeShapesDataset, zipClassFolders, type DatasetImage } from '../helpers/datasets.js';
import { makeTempDir, openTestDb, type TestDb } from '../helpers/db.js';
import { startS3, type TestS3 } from '../helpers/s3.js';
import { ADMIN_TOKEN, FIXTURE_BACKBONE } from '../routes/harness.js';
import { readSse } from '../routes/sse.js';

const kind = process.env.DATABASE_URL ? 'postgres' : 'pglite';

describe(`end to end on ${kind} and S3 (s3rver)`, () => {
  let s3: TestS3;
  let db: TestDb | undefined;
  let dir: string;
  let server: RunningServer;
  let url: string;
  const saved: Record<string, string | undefined> = {};

  beforeAll(async () => {
    s3 = await startS3();
    dir = await makeTempDir('dtl-e2e');
    // The AWS SDK takes credentials from the environment, as it would in production.
    for (const [k, v] of Object.entries({ AWS_ACCESS_KEY_ID: s3.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey })) {
      saved[k] = process.env[k];
      process.env[k] = v;
    }
    if (kind === 'postgres') db = await openTestDb('postgres');
    server = await startServer({
      DATA_DIR: dir,
      ...(db?.url ? { DATABASE_URL: db.url } : {}),
      S3_BUCKET: s3.bucket,
      S3_ENDPOINT: s3.endpoint,
      S3_PREFIX: 'dtl/',
      BACKBONE: FIXTURE_BACKBONE,
      PORT: '0',
      HOST: '127.0.0.1',
      ADMIN_TOKEN,
      TFJS_BACKEND: 'wasm',
      LOG_LEVEL: 'warn',
      WORKER_ENABLED: 'true',
    });
    url = server.url;
  });
  afterAll(async () => {
    await server?.close();
    await db?.close();
    await s3?.stop();
    await rm(dir, { recursive: true, force: true });
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });

  async function call(method: string, path: string, opts: { token?: string; json?: unknown; body?: RequestInit['body']; type?: string } = {}) {
    const headers: Record<string, string> = {};
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    let body = opts.body;
    if (opts.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(opts.json);
    } else if (opts.type) headers['content-type'] = opts.type;
    const res = await fetch(`${url}${path}`, { method, headers, body });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined, headers: res.headers };
  }

  it('tenant → key → data set → train → SSE → classify → fan-out → download → import → same predictions', async () => {
    const tenant = await call('POST', '/v1/tenants', { token: ADMIN_TOKEN, json: { name: 'e2e' } });
    expect(tenant.status).toBe(201);
    const key = await call('POST', `/v1/tenants/${tenant.body.id}/keys`, { token: ADMIN_TOKEN, json: { name: 'all', scopes: ['classify', 'train', 'manage'] } });
    expect(key.status).toBe(201);
    const token: string = key.body.token;

    // Data set, streamed as multipart over the socket.
    const images = await makeShapesDataset({ classes: 3, perClass: 12, size: 32, seed: 21 });
    const form = new FormData();
    form.append('name', 'shapes');
    form.append('file', new Blob([await zipClassFolders(images)], { type: 'application/zip' }), 'shapes.zip');
    const ds = await call('POST', '/v1/datasets', { token, body: form });
    expect(ds.status).toBe(201);
    expect(ds.body).toMatchObject({ status: 'ready', imageCount: 36 });

    const train = await call('POST', '/v1/adapters', {
      token,
      json: { datasetId: ds.body.id, name: 'shapes', hyperparameters: { epochs: 4, warmupEpochs: 1, batchSize: 12, patience: 0, lr: 0.01 } },
    });
    expect(train.status).toBe(202);

    // Progress over SSE until the job ends.
    const stream = await fetch(`${url}/v1/jobs/${train.body.job.id}/events`, { headers: { authorization: `Bearer ${token}` } });
    expect(stream.headers.get('content-type')).toContain('text/event-stream');
    const events = await readSse(stream);
    expect(events.filter((e) => e.event === 'progress').length).toBeGreaterThanOrEqual(1);
    const end = JSON.parse(events.at(-1)!.data);
    expect(events.at(-1)!.event).toBe('end');
    expect(end).toMatchObject({ status: 'succeeded', result: { version: 1 } });

    const adapter = await call('GET', '/v1/adapters/shapes', { token });
    expect(adapter.body).toMatchObject({ status: 'ready', versionCount: 1 });

    // Classify three held-back-style images (multipart), and the same as base64 JSON.
    const probe: DatasetImage[] = [images[0], images[12], images[24]];
    const mform = new FormData();
    for (const im of probe) mform.append('images', new Blob([im.data], { type: 'image/png' }), im.name);
    mform.append('topK', '3');
    const first = await call('POST', '/v1/adapters/shapes/classify', { token, body: mform });
    expect(first.status).toBe(200);
    expect(first.body.results).toHaveLength(3);
    const viaJson = await call('POST', '/v1/adapters/shapes/classify', { token, json: { images: probe.map((im) => im.data.toString('base64')), topK: 3 } });
    expect(viaJson.body.results.map((r: { predictions: unknown }) => r.predictions)).toEqual(first.body.results.map((r: { predictions: unknown }) => r.predictions));

    // Fan-out: one image, the adapter twice (by name and pinned version).
    const fan = await call('POST', '/v1/classify/fan-out', { token, json: { image: probe[1].data.toString('base64'), adapters: ['shapes', { adapter: adapter.body.id, version: 1 }], topK: 3 } });
    expect(fan.status).toBe(200);
    expect(fan.body.results[0].predictions).toEqual(first.body.results[1].predictions);
    expect(fan.body.results[1].predictions).toEqual(first.body.results[1].predictions);

    // Download the trained file, import it as a new adapter: identical predictions.
    const file = await fetch(`${url}/v1/adapters/shapes/versions/latest/file`, { headers: { authorization: `Bearer ${token}` } });
    expect(file.status).toBe(200);
    const bytes = Buffer.from(await file.arrayBuffer());
    expect(bytes.length).toBeGreaterThan(100);
    const imported = await call('POST', '/v1/adapters/import?name=shapes-copy', { token, body: bytes, type: 'application/octet-stream' });
    expect(imported.status).toBe(201);
    expect(imported.body.version).toMatchObject({ source: 'imported', version: 1 });
    const copy = await call('POST', '/v1/adapters/shapes-copy/classify', { token, body: mform });
    expect(copy.status).toBe(200);
    expect(copy.body.results.map((r: { predictions: unknown }) => r.predictions)).toEqual(first.body.results.map((r: { predictions: unknown }) => r.predictions));
    const both = await call('POST', '/v1/classify/fan-out', { token, json: { image: probe[2].data.toString('base64'), adapters: ['shapes', 'shapes-copy'], topK: 3 } });
    expect(both.body.results[0].predictions).toEqual(both.body.results[1].predictions);

    // Everything the tenant stored lives in the S3 bucket, under its prefix.
    const stored = (await listAll(s3.makeStore({ prefix: 'dtl/' }), `tenants/${tenant.body.id}/`)).map((e) => e.key);
    expect(stored.some((k) => k.includes('/datasets/'))).toBe(true);
    expect(stored.filter((k) => k.includes('/adapters/')).length).toBe(2);
    expect(server.deps.database.kind).toBe(kind);

    // Latency of a one-image classify over the socket, adapter resident (for the report).
    const one = probe[0].data.toString('base64');
    const times: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t0 = performance.now();
      expect((await call('POST', '/v1/adapters/shapes/classify', { token, json: { images: [one] } })).status).toBe(200);
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    console.log(`e2e (${kind}): one-image classify over HTTP, p50 ${times[10].toFixed(1)} ms, max ${times[19].toFixed(1)} ms (tiny backbone)`);

    // Deleting the tenant removes its objects from the bucket too.
    expect((await call('DELETE', `/v1/tenants/${tenant.body.id}`, { token: ADMIN_TOKEN })).status).toBe(204);
    expect(await listAll(s3.makeStore({ prefix: 'dtl/' }), `tenants/${tenant.body.id}/`)).toEqual([]);
    expect((await call('GET', '/v1/me', { token })).status).toBe(401);
  });
});
