/**
 * SIGTERM under load (issue 8): a server process with classify requests queued and a training
 * job running gets SIGTERM. The queued requests complete with answers, new requests are refused,
 * the running job is handed back to the queue (or finished), and the process exits 0.
 */
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/db/open.js';
import * as jobsRepo from '../../src/db/repos/jobs.js';
import { makeShapesDataset, zipClassFolders } from '../helpers/datasets.js';
import { makeTempDir } from '../helpers/db.js';
import { ADMIN_TOKEN, FIXTURE_BACKBONE, fixturePath } from '../routes/harness.js';
import { spawnServer, type Spawned } from './spawn.js';

const LOAD = 40;
let dir: string;
let s: Spawned;

beforeAll(async () => {
  dir = await makeTempDir('dtl-sigterm');
});
afterAll(async () => {
  if (s !== undefined && s.proc.exitCode === null) s.proc.kill('SIGKILL');
  await rm(dir, { recursive: true, force: true });
});

async function json(url: string, init: RequestInit & { token?: string; json?: unknown } = {}) {
  const headers = new Headers(init.headers);
  if (init.token) headers.set('authorization', `Bearer ${init.token}`);
  let body = init.body;
  if (init.json !== undefined) {
    headers.set('content-type', 'application/json');
    body = JSON.stringify(init.json);
  }
  const res = await fetch(url, { ...init, headers, body });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

describe('SIGTERM under classify load', () => {
  it('completes in-flight requests, refuses new ones, releases the running job and exits 0', async () => {
    s = spawnServer({
      DATA_DIR: dir,
      BACKBONE: FIXTURE_BACKBONE,
      PORT: '0',
      HOST: '127.0.0.1',
      ADMIN_TOKEN,
      TFJS_BACKEND: 'wasm',
      LOG_LEVEL: 'info',
      // Batches wait to fill, so requests are certainly queued when the signal arrives.
      BATCH_MAX_WAIT_MS: '10000',
      BATCH_MAX_SIZE: '512',
      JOB_LEASE_MS: '3000',
      RATE_LIMIT_RPS: '100000',
      RATE_LIMIT_BURST: '100000',
    });
    const url = await s.ready;
    const tenant = await json(`${url}/v1/tenants`, { method: 'POST', token: ADMIN_TOKEN, json: { name: 'load' } });
    const key = await json(`${url}/v1/tenants/${tenant.body.id}/keys`, { method: 'POST', token: ADMIN_TOKEN, json: { scopes: ['classify', 'train'] } });
    const token: string = key.body.token;
    const imported = await json(`${url}/v1/adapters/import?name=golden`, {
      method: 'POST',
      token,
      headers: { 'content-type': 'application/octet-stream' },
      body: await readFile(fixturePath('adapter.safetensors')),
    });
    expect(imported.status).toBe(201);

    // A training job long enough to be running when the signal comes.
    const zip = await zipClassFolders(await makeShapesDataset({ classes: 2, perClass: 8, size: 32, seed: 2 }));
    const ds = await json(`${url}/v1/datasets?name=d`, { method: 'POST', token, headers: { 'content-type': 'application/zip' }, body: zip });
    const train = await json(`${url}/v1/adapters`, { method: 'POST', token, json: { datasetId: ds.body.id, name: 'long', hyperparameters: { epochs: 1000, warmupEpochs: 0, patience: 0, batchSize: 8 } } });
    expect(train.status).toBe(202);
    const jobId: string = train.body.job.id;
    for (let i = 0; (await json(`${url}/v1/jobs/${jobId}`, { token })).body.status !== 'running'; i++) {
      expect(i).toBeLessThan(300);
      await new Promise((r) => setTimeout(r, 100));
    }

    const image = (await readFile(fixturePath('input-0.png'))).toString('base64');
    const classify = () => json(`${url}/v1/adapters/golden/classify`, { method: 'POST', token, json: { images: [image], topK: 1 } });
    expect((await classify()).status).toBe(200); // adapter resident before the load

    const t0 = Date.now();
    const inFlight = Array.from({ length: LOAD }, () => classify().then((r) => ({ ...r, ms: Date.now() - t0 })));
    // All of them queued (the batch waits to fill): the gauge says so.
    for (let i = 0; ; i++) {
      const metrics = await (await fetch(`${url}/metrics`)).text();
      const depth = Number(/^dtl_classify_queue_depth (\d+)$/m.exec(metrics)?.[1]);
      if (depth === LOAD) break;
      expect(i).toBeLessThan(100);
      await new Promise((r) => setTimeout(r, 10));
    }
    const queuedAt = Date.now();
    s.proc.kill('SIGTERM');

    // New requests are refused: first the listener closes (connection refused) …
    let refusedAt: number | undefined;
    for (let i = 0; refusedAt === undefined; i++) {
      expect(i).toBeLessThan(200);
      try {
        const r = await fetch(`${url}/healthz`);
        await r.text();
      } catch {
        refusedAt = Date.now();
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    // … and every request from then on fails, none is served.
    const late = await Promise.all(
      Array.from({ length: 5 }, () => classify().then((r) => r.status, (err: Error) => `refused: ${(err.cause as { code?: string })?.code ?? err.message}`)),
    );
    for (const outcome of late) expect(outcome === 503 || String(outcome).startsWith('refused')).toBe(true);

    const results = await Promise.all(inFlight);
    expect(results.map((r) => r.status)).toEqual(Array(LOAD).fill(200));
    // Answered by the drain, not by the batch timer (10 s): shutdown does not wait for batches to fill.
    expect(Math.max(...results.map((r) => r.ms))).toBeLessThan(9_000);
    for (const r of results) expect(r.body.results[0].predictions[0].label).toBe('dog');
    expect(await s.exited).toEqual({ code: 0, signal: null });

    const logs = s.logs();
    const msgs = logs.map((l) => l.msg);
    const shutdownAt = msgs.indexOf('shutting down: refusing new requests, draining in-flight work');
    expect(shutdownAt).toBeGreaterThan(0);
    // The queued requests were answered after the signal, during the drain.
    const answeredAfter = logs.slice(shutdownAt).filter((l) => l.msg === 'request' && l.route === '/v1/adapters/{adapterId}/classify' && l.status === 200);
    expect(answeredAfter.length).toBe(LOAD);
    expect(msgs.at(-1)).toBe('shutdown complete');
    // Nothing had to be cut off: every connection closed on its own within the budget.
    expect(msgs).not.toContain('requests still open at the shutdown deadline; closing their connections');
    expect(msgs).not.toContain('classify queue not drained in time');
    console.log(
      `sigterm: ${LOAD} requests queued after ${queuedAt - t0} ms; SIGTERM then; listener closed +${refusedAt! - queuedAt} ms; ` +
        `all answered by +${Math.max(...results.map((r) => r.ms)) - (queuedAt - t0)} ms`,
    );

    // The running training job was handed back (queued, attempt not counted) or had finished.
    const db = await openDatabase({ DATABASE_URL: undefined, paths: { pgliteDir: path.join(dir, 'pglite') } }, { migrate: false });
    try {
      const job = await jobsRepo.get(db.db, tenant.body.id, jobId);
      expect(['queued', 'succeeded']).toContain(job.status);
      if (job.status === 'queued') {
        expect(job.attempts).toBe(0);
        // Page through: a fast machine writes hundreds of epoch events before the signal.
        const events: Awaited<ReturnType<typeof jobsRepo.listEvents>> = [];
        for (let page = await jobsRepo.listEvents(db.db, jobId, tenant.body.id); page.length > 0; ) {
          events.push(...page);
          page = await jobsRepo.listEvents(db.db, jobId, tenant.body.id, page.at(-1)!.id);
        }
        expect(events.at(-1)?.data).toMatchObject({ released: true });
      }
    } finally {
      await db.close();
    }
  });
});
