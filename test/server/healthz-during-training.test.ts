/**
 * Issue 15: compute never blocks the event loop. A server process (`node --import tsx
 * src/server.ts`, as `npm start` runs it) trains on a deliberately slow backbone — a random ViT
 * wide and deep enough that a training step takes on the order of a second on wasm — while this
 * test polls /healthz: every poll answers within 100 ms, because the job computes in a training
 * thread and the main thread only answers HTTP, heartbeats the lease and writes progress. The job
 * still completes on its first attempt (a 3 s lease: a blocked loop would have lost it).
 *
 * On a machine whose cores other processes oversubscribe (the shared 2-core box under load),
 * every waking thread — this test's own event loop included — is delayed by the scheduler alone,
 * up to a few hundred ms measured (the server's main thread then used ~1 % of a core while it
 * waited): there the bound is 500 ms for every poll (still under one training step, which the
 * test checks) and 100 ms for 95 % of them.
 */
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeShapesDataset, zipClassFolders } from '../helpers/datasets.js';
import { makeTempDir } from '../helpers/db.js';
import { writeTinyBackboneDir } from '../helpers/tiny-backbone.js';
import { ADMIN_TOKEN } from '../routes/harness.js';
import { spawnServer, type Spawned } from './spawn.js';

const BATCH = 16;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let dir: string;
let server: Spawned | undefined;

beforeAll(async () => {
  dir = await makeTempDir('dtl-healthz-training');
  // ~2.7 M weights, 145 tokens: a step of 16 images takes about a second even with the frozen
  // blocks on onnxruntime (at 65 tokens it was ≈ 450 ms, under the loaded machine's 500 ms bound).
  await writeTinyBackboneDir(path.join(dir, 'backbone'), { width: 192, depth: 6, heads: 3, mlpDim: 768, patchSize: 8, imageSize: 96, seed: 11 });
});
afterAll(async () => {
  if (server !== undefined && server.proc.exitCode === null && server.proc.signalCode === null) server.proc.kill('SIGKILL');
  await rm(dir, { recursive: true, force: true });
});

async function json(url: string, init: { method?: string; token?: string; json?: unknown; body?: Uint8Array; type?: string } = {}) {
  const headers: Record<string, string> = {};
  if (init.token) headers.authorization = `Bearer ${init.token}`;
  if (init.json !== undefined) headers['content-type'] = 'application/json';
  if (init.type !== undefined) headers['content-type'] = init.type;
  const res = await fetch(url, { method: init.method, headers, body: init.json === undefined ? init.body : JSON.stringify(init.json) });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined, text };
}

describe('/healthz while a job trains on a slow backbone', () => {
  it('every poll answers within 100 ms and the job completes on its first attempt', async () => {
    server = spawnServer({
      DATA_DIR: path.join(dir, 'data'),
      BACKBONE: path.join(dir, 'backbone'),
      PORT: '0',
      HOST: '127.0.0.1',
      ADMIN_TOKEN,
      TFJS_BACKEND: 'wasm',
      LOG_LEVEL: 'info',
      JOB_LEASE_MS: '3000',
    });
    const url = await server.ready;
    // How busy the machine is with other work (this test's server is idle until the job starts).
    const cores = os.availableParallelism();
    const load = os.loadavg()[0];
    const tenant = await json(`${url}/v1/tenants`, { method: 'POST', token: ADMIN_TOKEN, json: { name: 'slow' } });
    const key = await json(`${url}/v1/tenants/${tenant.body.id}/keys`, { method: 'POST', token: ADMIN_TOKEN, json: { scopes: ['train'] } });
    const token: string = key.body.token;
    const zip = await zipClassFolders(await makeShapesDataset({ classes: 3, perClass: 6, size: 64, seed: 6 }));
    const ds = await json(`${url}/v1/datasets?name=shapes`, { method: 'POST', token, type: 'application/zip', body: zip });
    expect(ds.status, ds.text).toBe(201);

    const train = await json(`${url}/v1/adapters`, {
      method: 'POST',
      token,
      json: { datasetId: ds.body.id, name: 'slow', hyperparameters: { lr: 0.01, variant: 'dtl', epochs: 1, warmupEpochs: 0, batchSize: BATCH, patience: 0 } },
    });
    expect(train.status, train.text).toBe(202);
    const jobId: string = train.body.job.id;

    // Poll /healthz back to back while another loop follows the job.
    const polls: number[] = [];
    let stepMs = 0;
    let job: { status: string; attempts: number; error?: unknown } | undefined;
    let runningMs = 0;
    let rssMb = 0;
    const follow = (async () => {
      let runningSince: number | undefined;
      for (;;) {
        const j = await json(`${url}/v1/jobs/${jobId}`, { token });
        const p = j.body.progress as { imagesPerSecond?: number } | null;
        if (p?.imagesPerSecond) stepMs = (BATCH / p.imagesPerSecond) * 1000;
        if (j.body.status === 'running' && runningSince === undefined) runningSince = Date.now();
        if (['succeeded', 'failed', 'cancelled'].includes(j.body.status)) {
          job = j.body;
          runningMs = Date.now() - (runningSince ?? Date.now());
          return;
        }
        if (runningSince !== undefined && rssMb === 0 && Date.now() - runningSince > 4000) {
          const m = await (await fetch(`${url}/metrics`)).text();
          rssMb = Number(/^process_resident_memory_bytes (\d+)/m.exec(m)?.[1]) / 2 ** 20;
        }
        await sleep(250);
      }
    })();
    const deadline = Date.now() + 45_000;
    while (job === undefined && Date.now() < deadline) {
      const t0 = performance.now();
      const r = await fetch(`${url}/healthz`);
      await r.text();
      polls.push(performance.now() - t0);
      expect(r.status).toBe(200);
      await sleep(20);
    }
    await follow;

    console.log(
      `healthz during training: ${polls.length} polls, max ${Math.max(...polls).toFixed(1)} ms, ` +
        `median ${[...polls].sort((a, b) => a - b)[Math.floor(polls.length / 2)].toFixed(1)} ms; job running ${runningMs} ms; a step ${stepMs.toFixed(0)} ms; server RSS ${rssMb.toFixed(0)} MiB; load ${load.toFixed(1)} on ${cores} cores`,
    );
    expect(job?.status, JSON.stringify(job?.error)).toBe('succeeded');
    expect(job?.attempts).toBe(1);
    // The polls covered real compute: seconds of training, dozens of polls.
    expect(runningMs).toBeGreaterThan(3000);
    expect(polls.length).toBeGreaterThan(50);
    // A blocked event loop would hold a poll for a whole step (the thread measured it, below).
    // On a quiet machine every poll answers within 100 ms. On one whose cores are oversubscribed by
    // other processes, the scheduler alone delays a waking thread by up to a few hundred ms — the
    // test process's too — so there the bound is a step's length, and 95 % within 100 ms.
    const bound = load <= cores ? 100 : 500;
    expect(stepMs).toBeGreaterThan(bound);
    expect(Math.max(...polls)).toBeLessThan(bound);
    expect([...polls].sort((a, b) => a - b)[Math.floor(polls.length * 0.95)]).toBeLessThan(100);

    server.proc.kill('SIGTERM');
    expect(await server.exited).toEqual({ code: 0, signal: null });
  }, 90_000);
});
