/**
 * An in-process app on real parts for route tests: a PGlite database (or PostgreSQL), a disk blob
 * store in a temp folder, the golden tiny backbone, and the real auth, limits and metrics. Requests
 * go through `app.request()`; no socket.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildApp, connectMetrics, type AppDeps } from '../../src/app.js';
import { createEngine } from '../../src/server.js';
import { loadConfig, type Config } from '../../src/config.js';
import { createLogger, type Logger } from '../../src/log.js';
import { createMetrics } from '../../src/metrics.js';
import { initBackend, loadBackboneFromDir } from '../../src/model/index.js';
import { Authenticator } from '../../src/services/auth.js';
import { ConcurrencyLimiter, RateLimiter } from '../../src/services/limits.js';
import { VersionResolver } from '../../src/services/version-resolver.js';
import { DiskBlobStore, type BlobStore } from '../../src/storage/index.js';
import { JobQueue, type QueueOptions } from '../../src/jobs/queue.js';
import { threadTrainCompute } from '../../src/threads/train-runner.js';
import type { TrainCompute } from '../../src/train/compute.js';
import { createWorkerRuntime, type WorkerRuntime } from '../../src/train/runtime.js';
import { makeTempDir, openTestDb, type DbKind, type TestDb } from '../helpers/db.js';

export const FIXTURE_BACKBONE = fileURLToPath(new URL('../fixtures/dtl-golden-hf', import.meta.url));
export const ADMIN_TOKEN = 'test-admin-token-0123456789';

export interface Harness {
  app: ReturnType<typeof buildApp>;
  deps: AppDeps;
  db: TestDb;
  config: Config;
  /** JSON request helper: returns status, parsed body and headers. */
  call(method: string, url: string, opts?: { token?: string; body?: unknown; headers?: Record<string, string> }): Promise<Reply>;
  admin(method: string, url: string, body?: unknown): Promise<Reply>;
  /** A fresh tenant and a key with the given scopes. */
  tenant(name: string, scopes?: string[]): Promise<{ id: string; token: string; keyId: string }>;
  shutdown: { begin(): void };
  close(): Promise<void>;
}

export type RequestBody = NonNullable<RequestInit['body']>;

export interface Reply {
  status: number;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  text: string;
  headers: Headers;
}

export interface HarnessOptions {
  kind?: DbKind;
  env?: Record<string, string>;
  worker?: boolean;
  log?: Logger;
  /** A blob store to use instead of a disk store in the temp folder (closed with the harness). */
  blobs?: BlobStore;
  /** Overrides of the in-process worker's queue options. */
  queue?: Partial<QueueOptions>;
  /**
   * Where the worker's training compute runs. Default: a training thread per job, as the server
   * runs it (configured from the harness's env, so its blob store is the harness's disk store);
   * in-process when `blobs` is given (the thread could not open that store). A function builds
   * any other (tests of the thread runner).
   */
  compute?: 'thread' | 'in-process' | ((ctx: { env: Record<string, string>; deps: AppDeps }) => TrainCompute);
}

export async function startHarness(opts: HarnessOptions = {}): Promise<Harness> {
  const dir = await makeTempDir('dtl-routes');
  // Batches run on this thread unless a test asks for executor threads (SERVE_WORKERS).
  const env: Record<string, string> = {
    DATA_DIR: dir,
    LOG_LEVEL: 'silent',
    ADMIN_TOKEN,
    BACKBONE: FIXTURE_BACKBONE,
    TFJS_BACKEND: 'wasm',
    SERVE_WORKERS: '0',
    ...opts.env,
  };
  const config = loadConfig(env);
  const db = await openTestDb(opts.kind ?? 'pglite');
  const blobs: BlobStore = opts.blobs ?? (await DiskBlobStore.open({ root: config.paths.blobDir }));
  await initBackend('wasm');
  const backbone = await loadBackboneFromDir(FIXTURE_BACKBONE);
  const log = opts.log ?? createLogger(config.LOG_LEVEL);
  const controller = new AbortController();
  const state = { shuttingDown: false };
  const metrics = createMetrics({ defaultMetrics: false });
  const engine = createEngine(config, backbone, blobs, metrics, env);
  await engine.ready();
  const deps: AppDeps = {
    config,
    log,
    database: db,
    blobs,
    backbone,
    engine,
    metrics,
    auth: new Authenticator({ database: db, log }, { ttlMs: config.AUTH_CACHE_TTL_MS }),
    resolver: new VersionResolver({ database: db }),
    limiter: new RateLimiter(config.RATE_LIMIT_RPS, config.RATE_LIMIT_BURST),
    uploads: new ConcurrencyLimiter(config.UPLOADS_PER_TENANT, 'data set uploads'),
    lifecycle: {
      get shuttingDown() {
        return state.shuttingDown;
      },
      signal: controller.signal,
      checks: {},
    },
  };
  connectMetrics(deps);
  const app = buildApp(deps);
  let runtime: WorkerRuntime | undefined;
  if (opts.worker) {
    // Short leases and polls: jobs start at once and cancels are seen quickly.
    const queue = new JobQueue(db.db, { leaseMs: 6000, maxAttempts: 2, backoff: { baseMs: 50, maxMs: 200 }, ...opts.queue });
    const mode = opts.compute ?? (opts.blobs === undefined ? 'thread' : 'in-process');
    const compute =
      mode === 'in-process'
        ? undefined
        : mode === 'thread'
          ? threadTrainCompute({ env, log, onThreadFailure: (reason) => metrics.countTrainThreadFailure(reason) })
          : mode({ env, deps });
    runtime = createWorkerRuntime(deps, { queue, pollMs: 50, cachePrecision: 'float16', compute });
    runtime.start();
  }
  const call: Harness['call'] = async (method, url, o = {}) => {
    const headers: Record<string, string> = { ...o.headers };
    if (o.token !== undefined) headers.authorization = `Bearer ${o.token}`;
    let body: RequestBody | undefined;
    if (o.body !== undefined) {
      if (o.body instanceof Uint8Array || o.body instanceof FormData || typeof o.body === 'string') body = o.body as RequestBody;
      else {
        body = JSON.stringify(o.body);
        headers['content-type'] ??= 'application/json';
      }
    }
    const res = await app.request(url, { method, headers, body });
    const text = await res.text();
    let parsed: unknown = undefined;
    try {
      parsed = text === '' ? undefined : JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    return { status: res.status, body: parsed, text, headers: res.headers };
  };
  const admin: Harness['admin'] = (method, url, body) => call(method, url, { token: ADMIN_TOKEN, body });
  return {
    app,
    deps,
    db,
    config,
    call,
    admin,
    async tenant(name, scopes = ['classify', 'train', 'manage']) {
      const t = await admin('POST', '/v1/tenants', { name });
      if (t.status !== 201) throw new Error(`tenant create failed: ${t.text}`);
      const k = await admin('POST', `/v1/tenants/${t.body.id}/keys`, { name: 'test', scopes });
      if (k.status !== 201) throw new Error(`key create failed: ${k.text}`);
      return { id: t.body.id, token: k.body.token, keyId: k.body.key.id };
    },
    shutdown: {
      begin() {
        state.shuttingDown = true;
        controller.abort();
      },
    },
    async close() {
      await runtime?.stop({ graceMs: 5000 });
      await engine.close();
      backbone.dispose();
      await blobs.close();
      await db.close();
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

export const fixturePath = (...p: string[]) => path.join(FIXTURE_BACKBONE, ...p);
