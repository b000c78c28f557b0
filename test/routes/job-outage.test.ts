/**
 * A storage outage in the middle of a training job, on real parts (s3rver, the in-process
 * worker, the HTTP API): the S3 server goes down once the job has started, so the publish (and
 * the retries' reads) fail; the job keeps being retried without using up its attempts, and
 * succeeds once the server is back. Meanwhile the tenant sees only a code and a fixed message —
 * in the job, the adapter listing and the SSE events — while the log carries bucket, key and
 * endpoint with the job id.
 */
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as jobsRepo from '../../src/db/repos/jobs.js';
import { makeShapesDataset, zipClassFolders } from '../helpers/datasets.js';
import { startS3, type TestS3 } from '../helpers/s3.js';
import { startHarness, type Harness } from './harness.js';
import { readSse } from './sse.js';

type Line = Record<string, unknown> & { err?: { message?: string; stack?: string } };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor<T>(what: string, check: () => Promise<T | undefined>, ms = 120_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

describe('a storage outage during a training job', () => {
  let s3: TestS3;
  let h: Harness;
  let t: { id: string; token: string };
  const lines: Line[] = [];
  const MAX_ATTEMPTS = 2;

  beforeAll(async () => {
    s3 = await startS3();
    const log = pino({ level: 'debug', formatters: { level: (label) => ({ level: label }) } }, { write: (s: string) => void lines.push(JSON.parse(s) as Line) });
    h = await startHarness({
      env: { JOB_MAX_ATTEMPTS: String(MAX_ATTEMPTS) },
      worker: true,
      log,
      blobs: s3.store,
      queue: { maxAttempts: MAX_ATTEMPTS, transientBackoff: { baseMs: 100, maxMs: 400, budgetMs: 120_000 } },
    });
    t = await h.tenant('outage-co');
  });
  afterAll(async () => {
    await s3?.up();
    await h?.close();
    await s3?.stop();
  });

  it('retries past maxAttempts while the store is down, succeeds after, and never shows the tenant the store', async () => {
    const zip = await zipClassFolders(await makeShapesDataset({ classes: 3, perClass: 6, size: 32, seed: 5 }));
    const up = await h.call('POST', '/v1/datasets?name=shapes', { token: t.token, body: zip, headers: { 'content-type': 'application/zip' } });
    expect(up.status).toBe(201);
    const started = await h.call('POST', '/v1/adapters', {
      token: t.token,
      body: { datasetId: up.body.id, name: 'outage-clf', hyperparameters: { epochs: 40, warmupEpochs: 0, batchSize: 16, patience: 0 } },
    });
    expect(started.status).toBe(202);
    const jobId: string = started.body.job.id;
    const events = () => jobsRepo.listEvents(h.db.db, jobId, t.id);

    // The prepared data set has been read: from now on the training runs, then publishes.
    await waitFor('the job to start', async () => ((await events()).some((e) => e.type === 'started') ? true : undefined));
    await s3.down();
    const transient = await waitFor('more transient failures than attempts', async () => {
      const all = await events();
      const ended = all.find((e) => e.type === 'status' && (e.data as { status?: string }).status === 'failed');
      if (ended !== undefined) throw new Error(`the job failed during the outage: ${JSON.stringify(ended.data)}`);
      const n = all.filter((e) => (e.data as { transient?: boolean }).transient === true);
      return n.length > MAX_ATTEMPTS ? n : undefined;
    });
    expect(transient.length).toBeGreaterThan(MAX_ATTEMPTS);

    // What the tenant sees during the outage: a code and the fixed message.
    const secrets = [s3.bucket, s3.endpoint, '127.0.0.1', 'tenants/', 'ECONNREFUSED', '.safetensors', 'prepared', '    at '];
    const expectClean = (text: string) => {
      for (const s of secrets) expect(text, `shows '${s}'`).not.toContain(s);
    };
    const during = await h.call('GET', `/v1/jobs/${jobId}`, { token: t.token });
    expect(during.status).toBe(200);
    expect(during.body.error).toEqual({ code: 'storage_error', message: 'the storage backend is temporarily unavailable; retry later' });
    expect(during.body.status).not.toBe('failed');
    expectClean(during.text);
    const adapters = await h.call('GET', '/v1/adapters', { token: t.token });
    expect(adapters.body.items[0].lastJob.error?.code).toBe('storage_error');
    expectClean(adapters.text);
    expectClean((await h.call('GET', '/v1/jobs', { token: t.token })).text);

    await s3.up();
    const done = await waitFor('the job to end', async () => {
      const j = await h.call('GET', `/v1/jobs/${jobId}`, { token: t.token });
      return ['succeeded', 'failed', 'cancelled'].includes(j.body.status) ? j : undefined;
    });
    expect(done.body.status, JSON.stringify(done.body.error)).toBe('succeeded');
    expect(done.body.attempts).toBeLessThanOrEqual(MAX_ATTEMPTS);
    expect((await h.call('GET', '/v1/adapters/outage-clf', { token: t.token })).body.versionCount).toBe(1);

    // The whole event stream, replayed: every failed attempt is there, none with internals.
    const res = await h.app.request(`/v1/jobs/${jobId}/events`, { headers: { authorization: `Bearer ${t.token}` } });
    const sse = await readSse(res);
    const failedAttempts = sse.filter((e) => e.event === 'status' && JSON.parse(e.data).data.error !== undefined);
    expect(failedAttempts.length).toBeGreaterThan(MAX_ATTEMPTS);
    expectClean(sse.map((e) => e.data).join('\n'));

    // The operator's log: each failed attempt with the job id and the full cause, the publish's write among them.
    const failures = lines.filter((l) => l.msg === 'job attempt failed' && l.job === jobId);
    expect(failures.length).toBe(transient.length);
    expect(failures.every((l) => l.failure === 'transient' && l.code === 'storage_error')).toBe(true);
    const causes = failures.map((l) => l.err?.message ?? '').join('\n');
    expect(causes).toContain(`bucket '${s3.bucket}'`);
    expect(causes).toMatch(/S3 put 'tenants\/[^']+\.safetensors'/);
    expect(causes).toContain('ECONNREFUSED');
  });
});
