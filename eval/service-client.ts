/**
 * The real service for the study's "over HTTP" row: src/server.ts in its own process exactly as
 * `npm start` runs it (default configuration, a fresh data directory: PGlite + disk blob store),
 * and the calls a tenant makes against it — admin creates a tenant and a key, the tenant uploads a
 * zip, trains, follows the job and classifies — through fetch, nothing in-process.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { spawnServer, type Spawned } from '../test/server/spawn.js';

/** The admin token the child is started with (ADMIN_TOKEN, at least 16 characters). */
const ADMIN_TOKEN = 'eval-http-admin-token-0123456789';

export interface JobView {
  id: string;
  status: 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
  result: { version?: number } | null;
  error: { code: string; message: string } | null;
  startedAt: string | null;
  finishedAt: string | null;
}

export interface VersionView {
  version: number;
  labels: string[];
  spec: { rank: number; beta?: number; loraBeforeBlocks?: number[]; addAfterBlocks?: number[]; fusionKernel?: number };
  metrics: Record<string, unknown>;
}

export interface ClassifyResult {
  predictions: { label: string; probability: number }[];
}

export class HttpError extends Error {
  override readonly name = 'HttpError';
  constructor(
    readonly status: number,
    readonly body: string,
    what: string,
  ) {
    super(`${what}: HTTP ${status} ${body.slice(0, 300)}`);
  }
}

export interface RunningService {
  url: string;
  /**
   * Calls the API; JSON in and out. 429/503 are retried after their Retry-After, a connection
   * lost before an answer only for GET and `idempotent` calls (a few times each).
   */
  call<T>(
    method: string,
    route: string,
    opts?: { token?: string; json?: unknown; body?: Buffer | FormData | string; headers?: Record<string, string>; idempotent?: boolean },
  ): Promise<T>;
  /** SIGTERM (SIGKILL after 20 s), then the data directory is removed. */
  stop(): Promise<void>;
  /** The service's stderr so far (for failures). */
  stderr(): string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startService(backboneDir: string, opts: { readyTimeoutMs?: number; env?: Record<string, string> } = {}): Promise<RunningService> {
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'dtl-eval-http-'));
  let proc: Spawned | undefined;
  // A caller that dies (a test timed out, ^C) must not leave a training service behind.
  const orphanGuard = () => proc?.proc.kill('SIGKILL');
  process.once('exit', orphanGuard);
  const stop = async () => {
    process.off('exit', orphanGuard);
    if (proc !== undefined && proc.proc.exitCode === null && proc.proc.signalCode === null) {
      proc.proc.kill('SIGTERM');
      const timer = setTimeout(() => proc?.proc.kill('SIGKILL'), 20_000);
      await proc.exited;
      clearTimeout(timer);
    }
    await fs.rm(dataDir, { recursive: true, force: true });
  };
  try {
    // Only what `npm start` needs: where to keep its state, a free port, the admin token, the backbone.
    proc = spawnServer({ ...opts.env, DATA_DIR: dataDir, PORT: '0', HOST: '127.0.0.1', ADMIN_TOKEN, BACKBONE: path.resolve(backboneDir) });
    const url = await proc.ready;
    const deadline = Date.now() + (opts.readyTimeoutMs ?? 60_000);
    for (;;) {
      const r = await fetch(new URL('/readyz', url)).catch(() => undefined);
      if (r?.status === 200) break;
      if (Date.now() > deadline) throw new Error(`the service at ${url} never became ready (last /readyz: ${r?.status ?? 'no answer'})`);
      await sleep(200);
    }
    const spawned = proc;
    const call: RunningService['call'] = async (method, route, o = {}) => {
      for (let attempt = 0; ; attempt++) {
        const headers: Record<string, string> = { ...o.headers };
        if (o.token !== undefined) headers.authorization = `Bearer ${o.token}`;
        let body = o.body;
        if (o.json !== undefined) {
          body = JSON.stringify(o.json);
          headers['content-type'] = 'application/json';
        }
        let r: Response;
        try {
          r = await fetch(new URL(route, url), { method, headers, body });
        } catch (err) {
          // A kept-alive socket can be closed by the server just as it is reused — most often
          // when training kept the server's event loop busy past its keep-alive timeout.
          // Safe to send again: reads, and classify (which changes nothing).
          if ((method === 'GET' || o.idempotent === true) && attempt < 5) {
            await sleep(500);
            continue;
          }
          throw err;
        }
        const text = await r.text();
        if ((r.status === 429 || r.status === 503) && attempt < 5) {
          await sleep(1000 * Math.min(10, Number(r.headers.get('retry-after') ?? '1') || 1));
          continue;
        }
        if (!r.ok) throw new HttpError(r.status, text, `${method} ${route}`);
        return (text === '' ? undefined : JSON.parse(text)) as never;
      }
    };
    return { url, call, stop, stderr: () => spawned.stderr() };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** A tenant and a key with the train and classify scopes, made through the admin API as the README shows. */
export async function createTenantKey(svc: RunningService, name: string): Promise<string> {
  const tenant = await svc.call<{ id: string }>('POST', '/v1/tenants', { token: ADMIN_TOKEN, json: { name } });
  const key = await svc.call<{ token: string }>('POST', `/v1/tenants/${tenant.id}/keys`, { token: ADMIN_TOKEN, json: { name: 'eval', scopes: ['train', 'classify'] } });
  return key.token;
}

/** Polls the job until it ends; throws unless it succeeded. */
export async function waitForJob(svc: RunningService, token: string, jobId: string, opts: { pollMs?: number; timeoutMs?: number } = {}): Promise<JobView> {
  const deadline = Date.now() + (opts.timeoutMs ?? 6 * 3600_000);
  for (;;) {
    const job = await svc.call<JobView>('GET', `/v1/jobs/${jobId}`, { token });
    if (job.status === 'succeeded') return job;
    if (job.status === 'failed' || job.status === 'cancelled') throw new Error(`training job ${job.status}: ${job.error?.code ?? ''} ${job.error?.message ?? ''}`);
    if (Date.now() > deadline) throw new Error(`training job still ${job.status} after ${opts.timeoutMs} ms`);
    await sleep(opts.pollMs ?? 1000);
  }
}

/** One classify request: several PNGs as multipart file parts, one answer per image in order. */
export async function classifyPngs(svc: RunningService, token: string, adapter: string, pngs: Buffer[]): Promise<ClassifyResult[]> {
  const form = new FormData();
  form.append('topK', '1');
  pngs.forEach((png, i) => form.append('images', new Blob([png], { type: 'image/png' }), `${i}.png`));
  const { results } = await svc.call<{ results: ClassifyResult[] }>('POST', `/v1/adapters/${encodeURIComponent(adapter)}/classify`, { token, body: form, idempotent: true });
  if (results.length !== pngs.length) throw new Error(`classify answered ${results.length} results for ${pngs.length} images`);
  return results;
}
