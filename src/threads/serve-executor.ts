/**
 * A serving executor thread (SERVE_WORKERS ≥ 1): owns a tfjs backend, its own copy of the backbone
 * (and onnxruntime sessions when that engine is on), the resident adapters and the prefix-activation
 * cache, and runs the batches the main thread routes to it — so no forward ever blocks the thread
 * that answers HTTP. Started by serve-executor-client.ts through spawnThread; it speaks
 * serve-protocol.ts. Every answer carries the executor's stats and the residency changes since the
 * last one, so the main side can answer `stats()` and `isResident()` without asking.
 */
import os from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { trimHeapsInBackground } from '../model/index.js';
import { blobAdapterLoader, LocalExecutor } from '../serve/index.js';
import { startComputeRuntime } from './compute-runtime.js';
import { IdleReclaimer } from './idle-reclaim.js';
import { decodeBatch, encodeOutcomes, toWireError, type FromExecutor, type Report, type ServeExecutorData, type ToExecutor } from './serve-protocol.js';

const data = (workerData as { data: ServeExecutorData }).data;
const port = parentPort!;
// Compute yields to the thread that answers HTTP (SERVE_WORKER_NICE): on Linux the nice value is
// per thread, and `setPriority(0, …)` sets the calling thread's (threads it starts later —
// onnxruntime's pool — inherit it). When the main thread is idle the executor still gets every
// core; when both want one, health probes, heartbeats and request intake go first. Where it is not
// allowed, nothing changes.
try {
  if (data.nice > 0) os.setPriority(0, data.nice);
} catch {
  // not permitted here: run at the process's priority
}
const runtime = await startComputeRuntime(data.env, { bindings: { thread: 'serve-executor', executor: data.index }, role: 'serve' });

/** The main thread's clock minus ours, from the last batch (deadlines and queue times are on its clock). */
let clockOffset = 0;
const changed = new Set<string>();
const executor = new LocalExecutor({
  backbone: runtime.backbone,
  loader: blobAdapterLoader(runtime.blobs, runtime.backbone, { precision: runtime.config.SERVE_PRECISION }),
  adapterCacheBytes: data.adapterCacheBytes,
  prefixCacheBytes: data.prefixCacheBytes,
  now: () => Date.now() + clockOffset,
  onResidencyChange: (key) => changed.add(key),
});

const idle = new IdleReclaimer(() => {
  void trimHeapsInBackground();
});

function report(): Report {
  const residency = [...changed].map((k): [string, boolean] => [k, executor.isResident(k)]);
  changed.clear();
  return { stats: executor.stats(), residency };
}

function send(message: FromExecutor, transfer: ArrayBuffer[] = []): void {
  port.postMessage(message, transfer);
}

async function handle(msg: ToExecutor): Promise<void> {
  switch (msg.type) {
    case 'run': {
      clockOffset = msg.sentAt - Date.now();
      idle.busy();
      try {
        const run = await executor.run(decodeBatch(msg.pixels, msg.perImage, msg.entries));
        const { outcomes, transfer } = encodeOutcomes(run.outcomes);
        send({ type: 'result', id: msg.id, outcomes, timings: run.timings, report: report() }, transfer);
      } finally {
        idle.idle();
      }
      return;
    }
    case 'preload': {
      const results = await executor.preload(msg.refs, msg.pin);
      send({
        type: 'preloaded',
        id: msg.id,
        results: results.map((r) => (r.error === undefined ? { key: r.key } : { key: r.key, error: toWireError(r.error) })),
        report: report(),
      });
      return;
    }
    case 'evict':
      executor.evict(msg.keys);
      for (const k of msg.keys) changed.add(k);
      send({ type: 'report', report: report() });
      return;
    case 'close':
      idle.close();
      await executor.close();
      await runtime.close();
      send({ type: 'closed' });
      port.close();
      return;
  }
}

port.on('message', (msg: ToExecutor) => {
  handle(msg).catch((err: unknown) => {
    // A failure outside executeBatch's own handling (it answers per request): this thread's state
    // is unknown, so it ends, and the main side fails what it had in flight and starts a new one.
    runtime.log.error({ err: toWireError(err) }, 'serving executor failed; exiting');
    process.exit(1);
  });
});
send({ type: 'ready', report: report() });
