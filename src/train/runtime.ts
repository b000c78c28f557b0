/**
 * The training worker as the server (in-process, WORKER_ENABLED) and `dtl-host worker` (alone,
 * for scaling out) both run it: a durable-queue Worker with the `train` handler.
 */
import { JobQueue, type Backoff } from '../jobs/queue.js';
import { Worker } from '../jobs/worker.js';
import { trainJobHandler, TRAIN_JOB_KIND, type TrainDeps, type TrainHandlerOptions } from './job.js';
import { webhookJobHandler, WEBHOOK_JOB_KIND } from './webhook-job.js';

export interface WorkerRuntimeOptions extends TrainHandlerOptions {
  /** Jobs at once (default WORKER_CONCURRENCY). They share one process and one tfjs heap. */
  concurrency?: number;
  /** Idle wait between claims (default 1000 ms). */
  pollMs?: number;
  owner?: string;
  /** How often to requeue jobs whose lease expired (default: the lease length). */
  recoverEveryMs?: number;
  /** Retry backoff (default the queue's). */
  backoff?: Backoff;
  /** A queue to use instead of one built from the config (tests, custom lease lengths). */
  queue?: JobQueue;
}

export interface WorkerRuntime {
  readonly worker: Worker;
  readonly queue: JobQueue;
  start(): void;
  /** Graceful: running jobs get `graceMs` (default the lease) to finish, then go back to the queue. */
  stop(options?: { graceMs?: number }): Promise<void>;
}

export function createWorkerRuntime(deps: TrainDeps, options: WorkerRuntimeOptions = {}): WorkerRuntime {
  const queue = options.queue ?? JobQueue.fromConfig(deps.database.db, deps.config, options.backoff);
  const log = deps.log.child({ component: 'worker' });
  const worker = new Worker({
    queue,
    handlers: { [TRAIN_JOB_KIND]: trainJobHandler({ ...deps, log }, options), [WEBHOOK_JOB_KIND]: webhookJobHandler(deps) },
    concurrency: options.concurrency ?? deps.config.WORKER_CONCURRENCY,
    pollMs: options.pollMs,
    owner: options.owner,
    recoverEveryMs: options.recoverEveryMs,
    logger: {
      info: (obj, msg) => log.info(obj, msg),
      warn: (obj, msg) => log.warn(obj, msg),
      error: (obj, msg) => log.error(obj, msg),
    },
  });
  let started = false;
  return {
    worker,
    queue,
    start() {
      if (started) return;
      started = true;
      worker.start();
      log.info({ owner: worker.owner }, 'training worker started');
    },
    async stop(opts) {
      if (!started) return;
      started = false;
      await worker.stop(opts);
      log.info({ owner: worker.owner }, 'training worker stopped');
    },
  };
}
