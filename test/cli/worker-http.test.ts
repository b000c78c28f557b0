/**
 * The worker's HTTP side: /healthz and /metrics served by worker-http.ts, counters fed by a real
 * queue on PGlite and a real Worker, and `dtl-host worker` serving both on PORT until SIGTERM.
 */
import { spawn } from 'node:child_process';
import { cp, readdir, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWorkerMetrics, ObservedJobQueue, startWorkerHttp, type JobOutcome } from '../../src/cli/worker-http.js';
import { AppError } from '../../src/errors.js';
import { Worker } from '../../src/jobs/worker.js';
import { makeTempDir, openTestPglite, type TestDb } from '../helpers/db.js';
import { writeTinyBackboneDir } from '../helpers/tiny-backbone.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor<T>(check: () => Promise<T | undefined> | T | undefined, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error('timed out waiting');
    await sleep(25);
  }
}

/** The value of one unlabelled sample in Prometheus text. */
function sample(text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

describe('worker http', () => {
  it('serves /healthz (200 while live, 503 after) and /metrics; 404/405 otherwise; close frees the port', async () => {
    let live = true;
    let active = 2;
    const metrics = createWorkerMetrics(() => active);
    metrics.record('claimed');
    metrics.record('claimed');
    metrics.record('failed');
    const http = await startWorkerHttp({ host: '127.0.0.1', port: 0, registry: metrics.registry, live: () => live });
    try {
      expect(http.port).toBeGreaterThan(0);
      const health = await fetch(`${http.url}/healthz`);
      expect(health.status).toBe(200);
      expect(await health.json()).toEqual({ status: 'ok' });

      const res = await fetch(`${http.url}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toContain('text/plain');
      const text = await res.text();
      expect(sample(text, 'dtl_worker_jobs_claimed_total')).toBe(2);
      expect(sample(text, 'dtl_worker_jobs_failed_total')).toBe(1);
      expect(sample(text, 'dtl_worker_jobs_succeeded_total')).toBe(0);
      expect(sample(text, 'dtl_worker_jobs_active')).toBe(2);
      expect(text).toContain('# TYPE dtl_worker_jobs_claimed_total counter');
      expect(text).toMatch(/^process_resident_memory_bytes \d+/m);
      active = 0;
      expect(sample(await (await fetch(`${http.url}/metrics`)).text(), 'dtl_worker_jobs_active')).toBe(0);

      expect((await fetch(`${http.url}/v1/classify`)).status).toBe(404);
      const post = await fetch(`${http.url}/healthz`, { method: 'POST' });
      expect(post.status).toBe(405);
      expect(post.headers.get('allow')).toBe('GET, HEAD');
      live = false;
      expect((await fetch(`${http.url}/healthz`)).status).toBe(503);
    } finally {
      await http.close();
    }
    await expect(fetch(`${http.url}/healthz`)).rejects.toThrow();
  });

  it('a taken port → config_invalid naming it', async () => {
    const { registry } = createWorkerMetrics(() => 0, { defaultMetrics: false });
    const first = await startWorkerHttp({ host: '127.0.0.1', port: 0, registry, live: () => true });
    try {
      const err = await startWorkerHttp({ host: '127.0.0.1', port: first.port, registry, live: () => true }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AppError);
      expect(err).toMatchObject({ code: 'config_invalid', message: expect.stringContaining(`127.0.0.1:${first.port}`) });
    } finally {
      await first.close();
    }
  });
});

describe('ObservedJobQueue with a real Worker (PGlite)', () => {
  let db: TestDb;
  beforeAll(async () => {
    db = await openTestPglite();
  });
  afterAll(() => db?.close());

  it('counts claims and the outcomes the database recorded; active follows running jobs', async () => {
    const seen: JobOutcome[] = [];
    const metrics = createWorkerMetrics(() => worker.active, { defaultMetrics: false });
    const queue = new ObservedJobQueue(db.db, { leaseMs: 5000, maxAttempts: 1 }, (o) => {
      seen.push(o);
      metrics.record(o);
    });
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => (release = r));
    const worker: Worker = new Worker({
      queue,
      concurrency: 2,
      pollMs: 20,
      handlers: {
        ok: async () => {
          await gate;
          return { fine: true };
        },
        bad: async () => {
          throw new AppError('validation_failed', 'not trainable');
        },
      },
    });
    await queue.enqueue({ kind: 'ok' });
    await queue.enqueue({ kind: 'bad' });
    worker.start();
    try {
      // The bad job fails at once; the good one is held running by the gate.
      await waitFor(() => (seen.includes('failed') && worker.active === 1 ? true : undefined));
      const during = await metrics.registry.metrics();
      expect(sample(during, 'dtl_worker_jobs_active')).toBe(1);
      expect(sample(during, 'dtl_worker_jobs_claimed_total')).toBe(2);
      release();
      await waitFor(() => (seen.includes('succeeded') ? true : undefined));
    } finally {
      release();
      await worker.stop({ graceMs: 2000 });
    }
    expect(seen.filter((o) => o === 'claimed')).toHaveLength(2);
    expect(seen.filter((o) => o !== 'claimed').sort()).toEqual(['failed', 'succeeded']);
    const after = await metrics.registry.metrics();
    expect(sample(after, 'dtl_worker_jobs_succeeded_total')).toBe(1);
    expect(sample(after, 'dtl_worker_jobs_failed_total')).toBe(1);
    expect(sample(after, 'dtl_worker_jobs_active')).toBe(0);
  });
});

describe('dtl-host worker', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await makeTempDir('dtl-cli-worker-http');
    // A copy of the migrated PGlite template the db helper keeps (creating one takes many seconds).
    await (await openTestPglite()).close();
    const templates = (await readdir(os.tmpdir())).filter((n) => n.startsWith('dtl-pglite-template-'));
    const stamped = await Promise.all(templates.map(async (n) => ({ n, t: (await stat(path.join(os.tmpdir(), n))).mtimeMs })));
    await cp(path.join(os.tmpdir(), stamped.sort((a, b) => b.t - a.t)[0].n), path.join(dir, 'pglite'), { recursive: true });
    await writeTinyBackboneDir(path.join(dir, 'backbone'), { seed: 3 });
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('with a metrics token, /metrics answers only that bearer token (401 + WWW-Authenticate otherwise); /healthz stays open', async () => {
    const metrics = createWorkerMetrics(() => 0, { defaultMetrics: false });
    const token = 'worker-metrics-token-0123456789';
    const http = await startWorkerHttp({ host: '127.0.0.1', port: 0, registry: metrics.registry, live: () => true, metricsToken: token });
    try {
      for (const authorization of [undefined, 'Bearer wrong-token-0123456789', `Basic ${token}`]) {
        const res = await fetch(`${http.url}/metrics`, { headers: authorization === undefined ? {} : { authorization } });
        expect(res.status).toBe(401);
        expect(res.headers.get('www-authenticate')).toMatch(/^Bearer\b/);
        expect(await res.text()).not.toContain('dtl_');
      }
      const ok = await fetch(`${http.url}/metrics`, { headers: { authorization: `Bearer ${token}` } });
      expect(ok.status).toBe(200);
      expect(await ok.text()).toContain('dtl_worker_jobs_active');
      expect((await fetch(`${http.url}/healthz`)).status).toBe(200);
    } finally {
      await http.close();
    }
  });

  it('serves /healthz and /metrics on PORT while it runs and closes them on SIGTERM', async () => {
    const child = spawn(process.execPath, ['bin/dtl-host.js', 'worker'], {
      cwd: ROOT,
      env: { ...process.env, TFJS_BACKEND: 'wasm', DATA_DIR: dir, BACKBONE: path.join(dir, 'backbone'), DATABASE_URL: '', LOG_LEVEL: 'info', HOST: '127.0.0.1', PORT: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const url = await waitFor(() => /"url":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(out)?.[1], 90_000).catch((err: unknown) => {
        throw new Error(`worker did not start: ${out.slice(-2000)}`, { cause: err });
      });
      const health = await fetch(`${url}/healthz`);
      expect(health.status).toBe(200);
      const text = await (await fetch(`${url}/metrics`)).text();
      expect(sample(text, 'dtl_worker_jobs_claimed_total')).toBe(0);
      expect(sample(text, 'dtl_worker_jobs_active')).toBe(0);
      expect(text).toMatch(/^process_cpu_seconds_total [\d.e+-]+$/m);

      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(out).toContain('training worker stopped');
      await expect(fetch(`${url}/healthz`)).rejects.toThrow();
    } finally {
      child.kill('SIGKILL');
    }
  });
});
