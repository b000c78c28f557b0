/**
 * What a training thread (train-job.ts) and its runner (train-runner.ts) say to each other. All of
 * it crosses by structured clone; the adapter file's bytes are transferred, not copied.
 */
import { AppError, isAppError, type ErrorCode } from '../errors.js';
import type { TrainComputeInput, TrainComputeHooks, TrainedFile } from '../train/compute.js';

/** workerData.data of a training thread. */
export interface TrainThreadData {
  /** The environment the parent was configured from (startComputeRuntime). */
  env: Record<string, string | undefined>;
  input: TrainComputeInput;
}

type HookMessage<K extends keyof TrainComputeHooks> = { type: K; data: Parameters<TrainComputeHooks[K]>[0] };

/** Thread → parent, in the order they happened. */
export type FromTrainThread =
  | HookMessage<'started'>
  | HookMessage<'epoch'>
  | HookMessage<'search'>
  | { type: 'done'; file: TrainedFile }
  | { type: 'failed'; error: SerializedError };

/** Parent → thread: stop at the next batch (the job was cancelled, lost its lease, or is shutting down). */
export interface ToTrainThread {
  type: 'abort';
}

/** An error as it crosses: an AppError keeps its code, so the queue judges it as it would in-process. */
export type SerializedError = (
  | { kind: 'app'; code: ErrorCode; details?: Record<string, unknown>; retryAfterSeconds?: number }
  | { kind: 'error'; name: string; retryable?: boolean }
) & { message: string; stack?: string; cause?: SerializedError };

/** The cause chain goes along (a few levels): the operator's log shows what the store said. */
export function serializeError(err: unknown, depth = 0): SerializedError {
  const e = err instanceof Error ? err : new Error(String(err));
  const cause = e.cause !== undefined && depth < 4 ? { cause: serializeError(e.cause, depth + 1) } : {};
  if (isAppError(e)) return { kind: 'app', code: e.code, message: e.message, stack: e.stack, details: e.details, retryAfterSeconds: e.retryAfterSeconds, ...cause };
  const retryable = (e as { retryable?: unknown }).retryable;
  return { kind: 'error', name: e.name, message: e.message, stack: e.stack, ...(retryable === false ? { retryable: false } : {}), ...cause };
}

export function deserializeError(s: SerializedError): Error {
  const cause = s.cause === undefined ? undefined : deserializeError(s.cause);
  let err: Error & { retryable?: boolean };
  if (s.kind === 'app') {
    err = new AppError(s.code, s.message, { details: s.details, retryAfterSeconds: s.retryAfterSeconds, cause });
  } else {
    err = new Error(s.message, cause === undefined ? undefined : { cause });
    err.name = s.name;
    if (s.retryable === false) err.retryable = false;
  }
  if (s.stack !== undefined) err.stack = s.stack;
  return err;
}
