/**
 * `dtl-host worker` — runs training workers alone (no HTTP server), for scaling training out
 * across processes or machines. Same configuration as the server (DATABASE_URL, blob store,
 * BACKBONE, JOB_LEASE_MS, WORKER_CONCURRENCY, TRAIN_CACHE_BYTES, …). SIGTERM/SIGINT stop it
 * gracefully: running jobs get a lease's length to finish, then go back to the queue.
 * Serves /healthz and /metrics on HOST:PORT for probes and scrapes (worker-http.ts). Each job's
 * compute runs in a training thread (threads/train-runner.ts), as in the server.
 */
import { loadConfig } from '../config.js';
import { openDatabase } from '../db/open.js';
import { createLogger } from '../log.js';
import { initBackend, settleBackboneWeights, type Backbone } from '../model/index.js';
import { loadConfiguredBackbone, pullLogReporting } from '../services/backbone.js';
import { openBlobStore, type BlobStore } from '../storage/index.js';
import { Sweeper } from '../services/maintenance.js';
import { threadTrainCompute } from '../threads/train-runner.js';
import { createWorkerRuntime } from '../train/runtime.js';
import { UsageError, type Command } from './command.js';
import { createWorkerMetrics, ObservedJobQueue, startWorkerHttp, type WorkerHttp } from './worker-http.js';

export const workerCommand: Command = {
  name: 'worker',
  summary: 'run training workers without the HTTP server',
  usage: [
    'usage: dtl-host worker [--concurrency N]',
    '',
    '  --concurrency N  training jobs at once in this process (default WORKER_CONCURRENCY)',
    '',
    'Configuration comes from the environment, as for the server (DATABASE_URL, S3_BUCKET or',
    'BLOB_DIR, BACKBONE, JOB_LEASE_MS, TRAIN_CACHE_BYTES, …). Stops gracefully on SIGTERM/SIGINT.',
    'Serves GET /healthz and /metrics (Prometheus) on HOST:PORT.',
  ].join('\n'),
  options: { concurrency: { type: 'string' } },
  async run(values) {
    let concurrency: number | undefined;
    if (values.concurrency !== undefined) {
      concurrency = Number(values.concurrency);
      if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64) {
        throw new UsageError(`--concurrency must be an integer in 1..64, got '${String(values.concurrency)}'`);
      }
    }
    const config = loadConfig();
    const log = createLogger(config.LOG_LEVEL, { role: 'worker' });
    await initBackend(config.TFJS_BACKEND, (m) => log.info(m));
    const database = await openDatabase(config);
    let blobs: BlobStore | undefined;
    let backbone: Backbone | undefined;
    let http: WorkerHttp | undefined;
    try {
      blobs = await openBlobStore(config);
      // Loaded here to pull an hf: backbone once and to fail fast on a bad one; this thread never
      // computes with it (each job's thread loads its own), so its weights are dropped at once.
      backbone = await loadConfiguredBackbone(config, blobs, pullLogReporting(log), { deferResidency: true });
      settleBackboneWeights(backbone, 'native');
      log.info({ backbone: backbone.identity, width: backbone.config.width, depth: backbone.config.depth }, 'backbone loaded');
      // Read at scrape time, after `runtime` exists.
      const metrics = createWorkerMetrics(() => runtime.worker.active);
      const queue = new ObservedJobQueue(database.db, { leaseMs: config.JOB_LEASE_MS, maxAttempts: config.JOB_MAX_ATTEMPTS }, metrics.record);
      // Each job computes in a training thread, configured from the same environment; this thread
      // keeps the database, the heartbeats and /healthz.
      const compute = threadTrainCompute({ env: process.env, log, onThreadFailure: (reason) => metrics.threadFailure(reason) });
      const runtime = createWorkerRuntime({ config, log, database, blobs, backbone }, { concurrency, queue, compute });
      const stopped = new Promise<string>((resolve) => {
        process.once('SIGTERM', () => resolve('SIGTERM'));
        process.once('SIGINT', () => resolve('SIGINT'));
      });
      // Listening first: a taken port fails the start before any job is claimed.
      let live = false;
      http = await startWorkerHttp({ host: config.HOST, port: config.PORT, registry: metrics.registry, live: () => live, metricsToken: config.METRICS_TOKEN, onError: (err) => log.error({ err }, 'metrics scrape failed') });
      const sweeper = new Sweeper({ database, blobs, log }, { intervalMs: config.SWEEP_INTERVAL_MS, graceMs: config.SWEEP_GRACE_MS });
      runtime.start();
      sweeper.start();
      live = true;
      log.info({ url: http.url }, 'worker http listening (/healthz, /metrics)');
      const signal = await stopped;
      log.info({ signal }, 'stopping the worker');
      // Still live while draining (running jobs finish or go back to the queue), then closed.
      await runtime.stop();
      await sweeper.stop();
    } finally {
      await http?.close();
      backbone?.dispose();
      await blobs?.close();
      await database.close();
    }
  },
};
