/**
 * A training thread: one per running `train` job (train-runner.ts starts it). It starts the
 * compute runtime from the parent's environment (backend, blob store, backbone, engine), runs the
 * job's compute (train/compute.ts: the same function the in-process path runs) and posts its
 * progress, events and the adapter file back. The database stays on the main thread (PGlite
 * holds its data directory's lock there). An abort message is checked between batches; the runner
 * terminates a thread that does not end soon after it.
 */
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { reclaimMemory } from '../model/index.js';
import { computeTrainedFile } from '../train/compute.js';
import { startComputeRuntime, type ComputeRuntime } from './compute-runtime.js';
import { serializeError, type FromTrainThread, type ToTrainThread, type TrainThreadData } from './train-messages.js';

const port = parentPort!;
const { env, input } = (workerData as { data: TrainThreadData }).data;
const post = (m: FromTrainThread, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);

/**
 * Training is background work: on Linux this thread (and the engine's threads it starts, which
 * inherit it) runs at a lower priority (nice 10), so on a busy node the main thread's HTTP,
 * heartbeats and SSE — and serving — get the CPU first. Alone on a node it changes nothing.
 * Best effort: elsewhere there is no per-thread id to name.
 */
function lowerPriority(): void {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (Number.isInteger(tid) && tid > 0) setPriority(tid, TRAIN_THREAD_NICE);
  } catch {
    // Not Linux, or not allowed: train at the process's priority.
  }
}
const TRAIN_THREAD_NICE = 10;
lowerPriority();

const controller = new AbortController();
const onMessage = (m: ToTrainThread) => {
  if (m.type === 'abort') controller.abort(new Error('training aborted by its job'));
};
port.on('message', onMessage);

let rt: ComputeRuntime | undefined;
try {
  rt = await startComputeRuntime(env, { bindings: { thread: 'train', job: input.jobId }, role: 'train' });
  controller.signal.throwIfAborted();
  const file = await computeTrainedFile(
    rt,
    input,
    {
      started: (data) => post({ type: 'started', data }),
      epoch: (data) => post({ type: 'epoch', data }),
      search: (data) => post({ type: 'search', data }),
    },
    controller.signal,
  );
  // Transfer the file's bytes when they own their buffer; a pooled Buffer is copied out first.
  const own = file.bytes.byteOffset === 0 && file.bytes.byteLength === file.bytes.buffer.byteLength ? file.bytes : Uint8Array.from(file.bytes);
  post({ type: 'done', file: { ...file, bytes: own } }, [own.buffer as ArrayBuffer]);
} catch (err) {
  post({ type: 'failed', error: serializeError(err) });
} finally {
  await rt?.close();
  // The job's sessions, tapes and batches are gone: give their pages back to the node now rather
  // than leave them in glibc's heaps for the life of the process (memory-reclaim.ts).
  reclaimMemory();
  // Nothing more to hear: the thread ends once what it posted is on its way.
  port.off('message', onMessage);
  port.unref();
}
