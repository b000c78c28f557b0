/**
 * The main thread's side of a training thread: `threadTrainCompute(...)` is a `TrainCompute` (the
 * `compute` option of the train job handler) that runs each job's compute in a thread of its own
 * (train-job.ts) and turns what the thread posts back into the job's hooks, one at a time and in
 * order, so the events and progress rows are the ones the in-process path writes.
 *
 * One thread per job, ended with the job: its wasm heap (which never shrinks) and its copy of the
 * backbone go with it. While it computes, this thread stays free for HTTP, the lease's heartbeats
 * and SSE.
 *
 * - Abort (cancel, lease loss, shutdown): an abort message, which the trainer sees between
 *   batches; a thread still running `abortGraceMs` later is terminated. Rejects with the signal's
 *   reason, as the in-process compute does.
 * - A hook that fails (the database out of reach while writing progress) aborts the thread the
 *   same way and rejects with the hook's error, as it would have in-process.
 * - An error the compute throws comes back with its code (an AppError keeps it) and is judged as
 *   in-process.
 * - A thread that dies without an answer (an uncaught error, an exit, out of memory under
 *   `resourceLimits`) rejects with an 'internal' AppError — a retryable failure of that attempt,
 *   as a crashed process's job is — and is counted through `onThreadFailure`; the process lives on.
 */
import { Worker, type ResourceLimits } from 'node:worker_threads';
import { AppError } from '../errors.js';
import type { Logger } from '../log.js';
import type { TrainCompute, TrainComputeHooks, TrainComputeInput, TrainedFile } from '../train/compute.js';
import { spawnThread } from './spawn.js';
import { deserializeError, type FromTrainThread, type ToTrainThread, type TrainThreadData } from './train-messages.js';

const ENTRY = new URL('./train-job.ts', import.meta.url);

/** Why a thread ended without an answer (the `reason` label of dtl_train_thread_failures_total). */
export type TrainThreadFailure = 'error' | 'exit' | 'out_of_memory';

export interface TrainThreadOptions {
  /** The environment this process was configured from; the thread configures itself from it. */
  env: Record<string, string | undefined>;
  log?: Logger;
  onThreadFailure?: (reason: TrainThreadFailure) => void;
  /** How long an aborted thread may take to stop by itself before it is terminated (default 5 s). */
  abortGraceMs?: number;
  /** V8 heap limits of each thread (default none). */
  resourceLimits?: ResourceLimits;
  /** The thread's entry module (tests: threads that crash); default train-job.ts. */
  entry?: URL;
}

export const DEFAULT_ABORT_GRACE_MS = 5_000;

export function threadTrainCompute(opts: TrainThreadOptions): TrainCompute {
  return (input, hooks, signal) => runTrainThread(opts, input, hooks, signal);
}

async function runTrainThread(opts: TrainThreadOptions, input: TrainComputeInput, hooks: TrainComputeHooks, signal: AbortSignal): Promise<TrainedFile> {
  signal.throwIfAborted();
  const data: TrainThreadData = { env: opts.env, input };
  const thread: Worker = spawnThread(opts.entry ?? ENTRY, data, { resourceLimits: opts.resourceLimits, name: `train ${input.jobId}` });
  const started = Date.now();
  let file: TrainedFile | undefined;
  let failed: Error | undefined;
  let hookError: { err: unknown } | undefined;
  let crash: (Error & { code?: string }) | undefined;
  let killTimer: NodeJS.Timeout | undefined;

  const stop = () => {
    if (killTimer !== undefined) return;
    thread.postMessage({ type: 'abort' } satisfies ToTrainThread);
    killTimer = setTimeout(() => void thread.terminate(), opts.abortGraceMs ?? DEFAULT_ABORT_GRACE_MS);
  };
  const onAbort = () => stop();
  signal.addEventListener('abort', onAbort, { once: true });

  // Hooks write to the database: one at a time, in the order the thread posted them.
  let chain: Promise<void> = Promise.resolve();
  thread.on('message', (m: FromTrainThread) => {
    chain = chain
      .then(async () => {
        if (hookError !== undefined) return;
        switch (m.type) {
          case 'started':
            return hooks.started(m.data);
          case 'epoch':
            return hooks.epoch(m.data);
          case 'search':
            return hooks.search(m.data);
          case 'done':
            file = { ...m.file, bytes: Buffer.from(m.file.bytes.buffer, m.file.bytes.byteOffset, m.file.bytes.byteLength) };
            return;
          case 'failed':
            failed = deserializeError(m.error);
            return;
        }
      })
      .catch((err: unknown) => {
        hookError ??= { err };
        stop();
      });
  });
  thread.on('error', (err: Error) => {
    crash ??= err;
  });
  const exitCode = await new Promise<number>((resolve) => thread.once('exit', resolve));
  clearTimeout(killTimer);
  signal.removeEventListener('abort', onAbort);
  await chain;

  if (hookError !== undefined) throw hookError.err;
  if (signal.aborted) throw signal.reason;
  if (file !== undefined) return file;
  if (failed !== undefined) throw failed;
  const reason: TrainThreadFailure = crash?.code === 'ERR_WORKER_OUT_OF_MEMORY' ? 'out_of_memory' : crash !== undefined ? 'error' : 'exit';
  opts.onThreadFailure?.(reason);
  opts.log?.error({ job: input.jobId, reason, exitCode, err: crash, ms: Date.now() - started }, 'training thread died; the attempt fails and the job is retried');
  throw new AppError('internal', `the training thread died (${reason}${crash === undefined ? `, exit code ${exitCode}` : `: ${crash.message}`})`, { cause: crash });
}
