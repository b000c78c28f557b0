/**
 * A training job's webhook, through HTTP with a real worker and a real receiver: called once the
 * job ended, signed (HMAC-SHA256, Standard Webhooks layout), retried after a failed attempt, and
 * every attempt readable in the delivery log; foreign jobs are 404; bad webhook specs are 400.
 */
import { createHmac } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobQueue } from '../../src/jobs/queue.js';
import { createWorkerRuntime } from '../../src/train/runtime.js';
import { makeShapesDataset, zipClassFolders } from '../helpers/datasets.js';
import { startHarness, type Harness } from './harness.js';

const SECRET = 'whsec-test-0123456789abcdef';
const FAST = { epochs: 1, warmupEpochs: 0, batchSize: 16, patience: 0, lr: 0.01, variant: 'dtl' };

interface Received {
  headers: IncomingMessage['headers'];
  body: string;
}

let h: Harness;
let t: { id: string; token: string };
let datasetId: string;
let receiver: Server;
let url: string;
const received: Received[] = [];

beforeAll(async () => {
  h = await startHarness({ worker: true });
  t = await h.tenant('hooked');
  const zip = await zipClassFolders(await makeShapesDataset({ classes: 2, perClass: 6, size: 16, seed: 9 }));
  const up = await h.call('POST', '/v1/datasets?name=d', { token: t.token, body: zip, headers: { 'content-type': 'application/zip' } });
  expect(up.status).toBe(201);
  datasetId = up.body.id;
  receiver = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (d: string) => (body += d));
    req.on('end', () => {
      received.push({ headers: req.headers, body });
      // The first attempt fails: the second must come.
      res.writeHead(received.length === 1 ? 500 : 204).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks/dtl`;
});
afterAll(async () => {
  await h?.close();
  await new Promise((r) => receiver?.close(r));
});

async function until<T>(fn: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('training webhooks', () => {
  it('refuses a webhook that is not http(s) or has a short secret', async () => {
    for (const webhook of [{ url: 'ftp://example.test/x', secret: SECRET }, { url, secret: 'short' }, { url }]) {
      const r = await h.call('POST', '/v1/adapters', { token: t.token, body: { name: 'bad', datasetId, webhook } });
      expect(r.status, JSON.stringify(webhook)).toBe(400);
    }
  });

  it('calls the webhook once the job ended, signed, retrying a failed attempt, and logs every attempt', async () => {
    const r = await h.call('POST', '/v1/adapters', { token: t.token, body: { name: 'hooked', datasetId, hyperparameters: FAST, webhook: { url, secret: SECRET } } });
    expect(r.status).toBe(202);
    const jobId: string = r.body.job.id;
    const deliveries = await until(async () => {
      const d = await h.call('GET', `/v1/jobs/${jobId}/webhook-deliveries`, { token: t.token });
      expect(d.status).toBe(200);
      return d.body.items[0]?.status === 'succeeded' ? d.body.items : undefined;
    });
    expect(deliveries).toHaveLength(1);
    expect(deliveries[0]).toMatchObject({ url, attempts: 2, status: 'succeeded' });
    expect(deliveries[0].log.map((l: { attempt: number; status: number }) => [l.attempt, l.status])).toEqual([[1, 500], [2, 204]]);

    expect(received).toHaveLength(2);
    const last = received[1];
    // Same delivery id on every attempt: receivers de-duplicate by it.
    expect(last.headers['webhook-id']).toBe(received[0].headers['webhook-id']);
    const expected = createHmac('sha256', SECRET).update(`${String(last.headers['webhook-id'])}.${String(last.headers['webhook-timestamp'])}.${last.body}`).digest('base64');
    expect(last.headers['webhook-signature']).toBe(`v1,${expected}`);
    expect(Math.abs(Number(last.headers['webhook-timestamp']) - Date.now() / 1000)).toBeLessThan(120);
    const event = JSON.parse(last.body) as { type: string; data: { job: { id: string; status: string; result: { version: number } } } };
    expect(event.type).toBe('job.finished');
    expect(event.data.job).toMatchObject({ id: jobId, status: 'succeeded', result: { version: 1 } });
    // The webhook job is the queue's business: the tenant's job list shows training jobs only.
    expect((await h.call('GET', '/v1/jobs', { token: t.token })).body.items.every((j: { kind: string }) => j.kind === 'train')).toBe(true);
  });

  it("another tenant cannot read a job's deliveries; a job without a webhook has none", async () => {
    const jobs = (await h.call('GET', '/v1/jobs', { token: t.token })).body.items as { id: string }[];
    const other = await h.tenant('not-hooked');
    expect((await h.call('GET', `/v1/jobs/${jobs[0].id}/webhook-deliveries`, { token: other.token })).status).toBe(404);
    const plain = await h.call('POST', '/v1/adapters', { token: t.token, body: { name: 'plain', datasetId, hyperparameters: FAST } });
    await until(async () => ((await h.call('GET', `/v1/jobs/${plain.body.job.id}`, { token: t.token })).body.status === 'succeeded' ? true : undefined));
    expect((await h.call('GET', `/v1/jobs/${plain.body.job.id}/webhook-deliveries`, { token: t.token })).body.items).toEqual([]);
  });
});

describe('a webhook delivery is a queued row, not work on the request path', () => {
  it('a queued job cancelled through the API leaves a delivery job that a worker started later delivers', async () => {
    const idle = await startHarness(); // no worker: nothing runs until one starts
    try {
      const tt = await idle.tenant('later');
      const zip = await zipClassFolders(await makeShapesDataset({ classes: 2, perClass: 4, size: 16, seed: 4 }));
      const up = await idle.call('POST', '/v1/datasets?name=d', { token: tt.token, body: zip, headers: { 'content-type': 'application/zip' } });
      const before = received.length;
      const r = await idle.call('POST', '/v1/adapters', { token: tt.token, body: { name: 'a', datasetId: up.body.id, webhook: { url, secret: SECRET } } });
      const cancelled = await idle.call('POST', `/v1/jobs/${r.body.job.id}/cancel`, { token: tt.token });
      expect(cancelled.body.status).toBe('cancelled');
      const queued = await idle.call('GET', `/v1/jobs/${r.body.job.id}/webhook-deliveries`, { token: tt.token });
      expect(queued.body.items).toMatchObject([{ status: 'queued', attempts: 0, log: [] }]);
      expect(received.length).toBe(before); // the cancel answered without calling anyone

      const runtime = createWorkerRuntime(idle.deps, { queue: new JobQueue(idle.db.db, { leaseMs: 6000, maxAttempts: 2 }), pollMs: 50 });
      runtime.start();
      try {
        const done = await until(async () => {
          const d = await idle.call('GET', `/v1/jobs/${r.body.job.id}/webhook-deliveries`, { token: tt.token });
          return d.body.items[0]?.status === 'succeeded' ? d.body.items[0] : undefined;
        });
        expect(done.log.at(-1).status).toBe(204);
        expect((JSON.parse(received.at(-1)!.body) as { data: { job: { status: string } } }).data.job.status).toBe('cancelled');
      } finally {
        await runtime.stop({ graceMs: 2000 });
      }
    } finally {
      await idle.close();
    }
  });
});
