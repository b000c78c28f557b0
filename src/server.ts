/**
 * The composition root: configuration → logger → database → blob store → tfjs backend → backbone
 * → serving engine → HTTP app (+ the training worker when WORKER_ENABLED, each job computing in a
 * training thread: threads/train-runner.ts) → listen. `npm start`
 * runs it; tests import `startServer` and spawn it as a process.
 *
 * Graceful shutdown (SIGTERM/SIGINT, or `close()`): /readyz fails and new requests are refused at
 * once (the listener closes; a request on a kept-alive connection gets 503 + Connection: close);
 * classify requests already queued run to completion (the engine drains without waiting for
 * batches to fill); requests in flight finish, up to SHUTDOWN_TIMEOUT_MS; the worker finishes or
 * releases its job; then the engine, blob store and database close and the process exits 0.
 */
import { once } from 'node:events';
import { mkdir, stat } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { buildApp, connectMetrics, type AppDeps } from './app.js';
import { createHttpServer } from './routes/http-server.js';
import { loadConfiguredBackbone, pullLogReporting } from './services/backbone.js';
import { isHubSpec, parseHubSpec } from './services/hub-client.js';
import { engineOptions, loadConfig, type Config } from './config.js';
import { openDatabase, type Database } from './db/open.js';
import { AppError, isAppError } from './errors.js';
import { createLogger, type Logger } from './log.js';
import { createMetrics, type Metrics } from './metrics.js';
import { detachNative, initBackend, settleBackboneWeights, startBackboneEngine, type Backbone } from './model/index.js';
import { processCores } from './model/native/engine.js';
import { ServingEngine, type ServeExecutor } from './serve/index.js';
import { ThreadExecutor } from './threads/serve-executor-client.js';
import { Authenticator } from './services/auth.js';
import { sweepUploadWorkDirs } from './services/datasets.js';
import { Sweeper } from './services/maintenance.js';
import { VersionResolver } from './services/version-resolver.js';
import { ConcurrencyLimiter, RateLimiter } from './services/limits.js';
import { openBlobStore, type BlobStore } from './storage/index.js';
import { threadTrainCompute } from './threads/train-runner.js';
import { createWorkerRuntime, type WorkerRuntime } from './train/runtime.js';

export interface RunningServer {
  readonly url: string;
  readonly port: number;
  readonly deps: AppDeps;
  /** Graceful shutdown; idempotent. */
  close(reason?: string): Promise<void>;
}

/** A local BACKBONE folder must exist, a hub spec must parse; checked before anything slow starts, so a typo fails in a second. */
export async function checkBackboneFolder(config: Pick<Config, 'BACKBONE'>): Promise<void> {
  if (config.BACKBONE.startsWith('blob:')) return;
  if (isHubSpec(config.BACKBONE)) {
    parseHubSpec(config.BACKBONE);
    return;
  }
  const dir = path.resolve(config.BACKBONE);
  const found = await stat(dir).then(
    (s) => s.isDirectory() || (s.isFile() && dir.endsWith('.npz')),
    () => false,
  );
  if (!found) {
    throw new AppError(
      'config_invalid',
      `BACKBONE folder '${dir}' does not exist: set BACKBONE to a ViT folder (model.safetensors + config.json, Hugging Face or timm layout), a Google ViT .npz or to blob:<key prefix> in the blob store, or to hf:<org>/<name>[@revision] on the model hub`,
    );
  }
}

/**
 * The serving engine as configured, reporting its batches to the metrics. With SERVE_WORKERS ≥ 1
 * its batches run on that many executor threads, each started from `env` (the environment the
 * config was parsed from) with an equal share of the cache budgets and, unless ENGINE_THREADS is
 * set, of the cores for onnxruntime; without, on this thread.
 */
export function createEngine(
  config: Config,
  backbone: Backbone,
  blobs: BlobStore,
  metrics: Metrics,
  env: Record<string, string | undefined>,
  log?: Logger,
): ServingEngine {
  const n = config.SERVE_WORKERS;
  let executors: ServeExecutor[] | undefined;
  if (n > 0) {
    const threadEnv = { ...env, ENGINE_THREADS: env.ENGINE_THREADS ?? String(Math.max(1, Math.floor(processCores() / n))) };
    const perImage = backbone.config.imageSize ** 2 * 3;
    executors = Array.from(
      { length: n },
      (_, index) =>
        new ThreadExecutor({
          data: {
            env: threadEnv,
            index,
            nice: config.SERVE_WORKER_NICE,
            adapterCacheBytes: Math.max(1024, Math.floor(config.ADAPTER_CACHE_BYTES / n)),
            prefixCacheBytes: Math.floor(config.PREFIX_CACHE_BYTES / n),
          },
          perImage,
          log,
        }),
    );
  }
  return ServingEngine.fromConfig(config, backbone, blobs, { onBatch: (info) => metrics.observeBatch(info), executors });
}

async function closeQuietly(log: Logger, what: string, fn: () => unknown): Promise<void> {
  try {
    await fn();
  } catch (err) {
    log.error({ err }, `closing ${what} failed`);
  }
}

function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.then(() => true),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * A blob store that cannot be used (a missing bucket, no credentials) is not fatal at start — in
 * a compose stack the bucket may be created a moment later — but it must not go unnoticed either:
 * one clear line now, and /readyz fails with the same reason until it works.
 */
async function checkBlobStore(blobs: BlobStore, log: Logger): Promise<void> {
  let reason: string | undefined;
  const answered = await within(
    blobs.ping().catch((err: unknown) => {
      reason = err instanceof Error ? err.message : String(err);
    }),
    BLOB_CHECK_MS,
  );
  if (!answered) reason = `no answer within ${BLOB_CHECK_MS} ms`;
  if (reason !== undefined) log.error({ blobs: blobs.kind, reason }, `blob store not usable: ${reason}; /readyz fails until it is`);
}
const BLOB_CHECK_MS = 5000;

export async function startServer(env: Record<string, string | undefined> = process.env): Promise<RunningServer> {
  const config = loadConfig(env);
  const log = createLogger(config.LOG_LEVEL);
  const started = Date.now();
  await mkdir(config.paths.dataDir, { recursive: true });
  await checkBackboneFolder(config);
  const backend = await initBackend(config.TFJS_BACKEND, (m) => log.info(m));
  const opened: Array<[string, () => unknown]> = [];
  const unwind = async () => {
    for (const [what, fn] of opened.reverse()) await closeQuietly(log, what, fn);
  };
  let database: Database;
  let blobs: BlobStore;
  let backbone: Backbone;
  try {
    database = await openDatabase(config);
    opened.push(['database', () => database.close()]);
    blobs = await openBlobStore(config);
    opened.push(['blob store', () => blobs.close()]);
    // Its folder (or hub spec) was checked above. The weights settle once the engine is known.
    backbone = await loadConfiguredBackbone(config, blobs, pullLogReporting(log), { deferResidency: true });
    opened.push(['backbone', () => backbone.dispose()]);
    // Training computes in threads of its own (threads/train-runner.ts) and so, with SERVE_WORKERS
    // ≥ 1, does serving (threads/serve-executor.ts): then this copy is only its config and identity
    // (request checks, adapter imports) and its weights go at once. Serving on this thread, it
    // needs them only where its engine holds them.
    if (config.SERVE_WORKERS > 0) settleBackboneWeights(backbone, 'native');
    else {
      const engine = await startBackboneEngine(backbone, config.BACKBONE_ENGINE, engineOptions(config), (m) => log.info(m));
      settleBackboneWeights(backbone, engine === 'onnxruntime' ? 'native' : 'tfjs');
      opened.push(['backbone engine', () => detachNative(backbone)]);
    }
  } catch (err) {
    await unwind();
    throw err;
  }
  log.info(
    { backend, database: database.kind, blobs: blobs.kind, backbone: backbone.identity, width: backbone.config.width, depth: backbone.config.depth },
    'backbone loaded',
  );
  await checkBlobStore(blobs, log);

  const staleUploads = await sweepUploadWorkDirs({ deps: { config } });
  if (staleUploads > 0) log.info({ removed: staleUploads }, 'removed upload work folders a previous run left');

  const metrics = createMetrics();
  const engine = createEngine(config, backbone, blobs, metrics, { ...env }, log);
  try {
    await engine.ready(); // executor threads have loaded their backbone (a start that fails stops here)
  } catch (err) {
    await closeQuietly(log, 'serving engine', () => engine.close());
    await unwind();
    throw err;
  }
  const controller = new AbortController();
  let shuttingDown = false;
  const deps: AppDeps = {
    config,
    log,
    database,
    blobs,
    backbone,
    engine,
    metrics,
    auth: new Authenticator({ database, log }, { ttlMs: config.AUTH_CACHE_TTL_MS }),
    resolver: new VersionResolver({ database }),
    limiter: new RateLimiter(config.RATE_LIMIT_RPS, config.RATE_LIMIT_BURST),
    uploads: new ConcurrencyLimiter(config.UPLOADS_PER_TENANT, 'data set uploads'),
    lifecycle: {
      get shuttingDown() {
        return shuttingDown;
      },
      signal: controller.signal,
      checks: { serving: () => (engine.stats().closed ? 'serving engine closed' : undefined) },
    },
  };
  connectMetrics(deps);
  const app = buildApp(deps);
  // Each training job computes in a thread of its own: this thread keeps answering HTTP and
  // heartbeating the job's lease while a batch runs.
  const compute = threadTrainCompute({ env, log, onThreadFailure: (reason) => metrics.countTrainThreadFailure(reason) });
  const worker: WorkerRuntime | undefined = config.WORKER_ENABLED ? createWorkerRuntime(deps, { compute }) : undefined;
  const maintenance = config.WORKER_ENABLED ? new Sweeper(deps, { intervalMs: config.SWEEP_INTERVAL_MS, graceMs: config.SWEEP_GRACE_MS }) : undefined;

  const server = createHttpServer(app, config);
  server.listen(config.PORT, config.HOST);
  try {
    await once(server, 'listening');
  } catch (err) {
    await engine.close();
    await unwind();
    throw new AppError('config_invalid', `cannot listen on ${config.HOST}:${config.PORT}: ${(err as Error).message}`, { cause: err });
  }
  worker?.start();
  maintenance?.start();
  const port = (server.address() as AddressInfo).port;
  const host = config.HOST === '0.0.0.0' || config.HOST === '::' ? '127.0.0.1' : config.HOST;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  log.info({ url, worker: config.WORKER_ENABLED, startupMs: Date.now() - started }, 'listening');

  let closing: Promise<void> | undefined;
  const close = (reason = 'close') =>
    (closing ??= (async () => {
      const t0 = Date.now();
      log.info({ reason }, 'shutting down: refusing new requests, draining in-flight work');
      shuttingDown = true;
      controller.abort();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Keep-alive connections go idle as their last response ends (SSE streams end on the abort):
      // close them as they do, rather than waiting out the keep-alive timeout.
      server.closeIdleConnections();
      const idleCloser = setInterval(() => server.closeIdleConnections(), 100);
      const budget = config.SHUTDOWN_TIMEOUT_MS;
      const drained = within(engine.drain(), budget);
      const stopped = worker?.stop().catch((err: unknown) => log.error({ err }, 'stopping the worker failed'));
      if (!(await drained)) log.warn({ budgetMs: budget }, 'classify queue not drained in time');
      if (!(await within(closed, Math.max(0, budget - (Date.now() - t0))))) {
        log.warn({ budgetMs: budget }, 'requests still open at the shutdown deadline; closing their connections');
        server.closeAllConnections();
        await closed;
      }
      clearInterval(idleCloser);
      await stopped;
      await maintenance?.stop();
      await closeQuietly(log, 'serving engine', () => engine.close());
      await unwind();
      log.info({ ms: Date.now() - t0 }, 'shutdown complete');
    })());
  return { url, port, deps, close };
}

async function main(): Promise<void> {
  let running: RunningServer;
  try {
    running = await startServer();
  } catch (err) {
    const message = isAppError(err) ? `${err.message} (${err.code})` : err instanceof Error ? err.message : String(err);
    process.stderr.write(`dtl-host: cannot start: ${message}\n`);
    process.exit(1);
  }
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals += 1;
    // A second signal means "now": skip the drain.
    if (signals > 1) process.exit(1);
    running.close(signal).then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`dtl-host: shutdown failed: ${(err as Error).message}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  void main();
}
