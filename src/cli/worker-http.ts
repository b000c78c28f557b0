/**
 * The small HTTP side of `dtl-host worker`: `/healthz` (liveness: 200 while the worker runs) and
 * `/metrics` (Prometheus text) on PORT, which the compose health check and the Kubernetes probes
 * and scrape annotations use. No framework: two routes on node:http.
 *
 * Metrics: the process defaults (prom-client's collectors, prefixed `dtl_` as the API's
 * are) plus what this worker's claims became, counted where they are recorded — at the queue.
 * No tenant ids. With METRICS_TOKEN set, /metrics answers only `Authorization: Bearer <token>`
 * (401 with `WWW-Authenticate: Bearer` otherwise), as the API's does.
 * A registry of its own rather than prom-client's global one, so tests can run several.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Registry } from 'prom-client';
import { registerProcessMetrics, trainThreadFailureCounter } from '../metrics.js';
import { AppError } from '../errors.js';
import { JobQueue, type Job } from '../jobs/queue.js';
import { bearerToken, sameToken } from '../services/auth.js';

export type JobOutcome = 'claimed' | 'succeeded' | 'failed' | 'cancelled' | 'released';

/** A JobQueue that reports each claim and each outcome this process records. */
export class ObservedJobQueue extends JobQueue {
  constructor(
    db: JobQueue['db'],
    options: ConstructorParameters<typeof JobQueue>[1],
    private readonly observe: (outcome: JobOutcome) => void,
  ) {
    super(db, options);
  }

  /** Only outcomes the database accepted count (a lost lease records nothing). */
  private seen(outcome: JobOutcome, job: Job | undefined): Job | undefined {
    if (job !== undefined) this.observe(outcome);
    return job;
  }

  override async claim(owner: string, kinds?: readonly string[]) {
    return this.seen('claimed', await super.claim(owner, kinds));
  }
  override async complete(id: string, owner: string, result?: unknown) {
    return this.seen('succeeded', await super.complete(id, owner, result));
  }
  override async fail(...a: Parameters<JobQueue['fail']>) {
    return this.seen('failed', await super.fail(...a));
  }
  override async markCancelled(id: string, owner: string) {
    return this.seen('cancelled', await super.markCancelled(id, owner));
  }
  override async release(id: string, owner: string) {
    return this.seen('released', await super.release(id, owner));
  }
}

export interface WorkerMetrics {
  readonly registry: Registry;
  record(outcome: JobOutcome): void;
  /** A training thread died without an answer (dtl_train_thread_failures_total). */
  threadFailure(reason: string): void;
}

const HELP: Record<JobOutcome, string> = {
  claimed: 'Jobs this worker claimed from the queue.',
  succeeded: 'Jobs this worker completed.',
  failed: 'Job attempts that failed on this worker (retried or final).',
  cancelled: 'Jobs this worker stopped on a cancel request.',
  released: 'Jobs this worker handed back to the queue on shutdown.',
};

/** `active`: jobs running now (read at scrape time). */
export function createWorkerMetrics(active: () => number, options: { defaultMetrics?: boolean } = {}): WorkerMetrics {
  const registry = new Registry();
  if (options.defaultMetrics !== false) registerProcessMetrics(registry);
  const counters = Object.fromEntries(
    (Object.keys(HELP) as JobOutcome[]).map((o) => [o, new Counter({ name: `dtl_worker_jobs_${o}_total`, help: HELP[o], registers: [registry] })]),
  ) as Record<JobOutcome, Counter>;
  new Gauge({
    name: 'dtl_worker_jobs_active',
    help: 'Jobs running on this worker now.',
    registers: [registry],
    collect() {
      this.set(active());
    },
  });
  return { registry, record: (outcome) => counters[outcome].inc(), threadFailure: trainThreadFailureCounter(registry) };
}

export interface WorkerHttp {
  readonly port: number;
  readonly url: string;
  close(): Promise<void>;
}

/** Listens on host:port (0 = a free port); 'config_invalid' when it cannot. */
export async function startWorkerHttp(opts: {
  host: string;
  port: number;
  registry: Registry;
  live: () => boolean;
  /** Bearer token /metrics requires (METRICS_TOKEN); unset → open. */
  metricsToken?: string;
  /** Told why a scrape failed (the answer itself says only that it did). */
  onError?: (err: unknown) => void;
}): Promise<WorkerHttp> {
  const server: Server = createServer((req, res) => {
    const route = (req.url ?? '/').split('?')[0];
    const send = (status: number, type: string, body: string, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', ...headers });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return send(405, 'text/plain', 'method not allowed\n');
    }
    if (route === '/healthz') {
      const live = opts.live();
      return send(live ? 200 : 503, 'application/json', JSON.stringify({ status: live ? 'ok' : 'stopped' }));
    }
    if (route === '/metrics') {
      if (opts.metricsToken !== undefined && !sameToken(opts.metricsToken, bearerToken(req.headers.authorization))) {
        return send(401, 'text/plain', 'missing or invalid metrics token\n', { 'www-authenticate': 'Bearer realm="metrics"' });
      }
      opts.registry.metrics().then(
        (text) => send(200, opts.registry.contentType, text),
        // The cause is for the operator's log (the caller of /metrics may be anyone who holds the token).
        (err: unknown) => {
          opts.onError?.(err);
          send(500, 'text/plain', 'metrics failed\n');
        },
      );
      return;
    }
    send(404, 'text/plain', 'not found (this is a worker: /healthz, /metrics)\n');
  });
  try {
    server.listen(opts.port, opts.host);
    await once(server, 'listening');
  } catch (err) {
    throw new AppError('config_invalid', `cannot listen on ${opts.host}:${opts.port}: ${(err as Error).message}`, { cause: err });
  }
  const { port } = server.address() as AddressInfo;
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  return {
    port,
    url: `http://${host}:${port}`,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Scrapers keep connections alive; they must not hold the process open.
      server.closeAllConnections();
      await closed;
    },
  };
}
