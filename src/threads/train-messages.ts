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
export type SerializedError =
  | { kind: 'app'; code: ErrorCode; message: string; details?: Record<string, unknown>; retryAfterSeconds?: number }
  | { kind: 'error'; name: string; message: string; stack?: string; retryable?: boolean };

export function serializeError(err: unknown): SerializedError {
  if (isAppError(err)) return { kind: 'app', code: err.code, message: err.message, details: err.details, retryAfterSeconds: err.retryAfterSeconds };
  const e = err instanceof Error ? err : new Error(String(err));
  const retryable = (e as { retryable?: unknown }).retryable;
  return { kind: 'error', name: e.name, message: e.message, stack: e.stack, ...(retryable === false ? { retryable: false } : {}) };
}

export function deserializeError(s: SerializedError): Error {
  if (s.kind === 'app') return new AppError(s.code, s.message, { details: s.details, retryAfterSeconds: s.retryAfterSeconds });
  const err = new Error(s.message) as Error & { retryable?: boolean };
  err.name = s.name;
  if (s.stack !== undefined) err.stack = s.stack;
  if (s.retryable === false) err.retryable = false;
  return err;
}
