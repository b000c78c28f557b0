/**
 * The one place a job handler's failure is judged: how it counts (transient, retryable,
 * permanent) and what the job's tenant is told about it (a code and a safe message). Operators
 * get the full error in the worker's log, with the job id.
 *
 * - transient: the storage or the database was briefly out of reach (storage_error, unavailable,
 *   database_locked, or a driver error dbUnavailable recognises). Says nothing about the job:
 *   retried with its own backoff without using up an attempt, within a time budget (queue.ts).
 * - permanent: a 4xx AppError (the job's input is wrong) or an error marked `retryable: false`.
 * - retryable: anything else (a bug, an out-of-memory, an aborted attempt) — up to maxAttempts.
 */
import { dbUnavailable } from '../db/errors.js';
import { AppError, isAppError, type ErrorCode } from '../errors.js';
import { safeJobError, type FailureKind, type JobError } from './queue.js';

const TRANSIENT: ReadonlySet<ErrorCode> = new Set(['storage_error', 'unavailable', 'database_locked']);

/**
 * The AppError a failure amounts to: the first one with a code of its own in the cause chain (a
 * storage_error an 'internal' wrapper carries still says the store was out of reach), else a
 * database outage raised outside dbCall, else the error itself if it is an AppError.
 */
function asAppError(err: unknown): AppError | undefined {
  let cur: unknown = err;
  for (let depth = 0; depth < 6 && cur !== null && typeof cur === 'object'; depth++) {
    if (isAppError(cur) && cur.code !== 'internal') return cur;
    cur = (cur as { cause?: unknown }).cause;
  }
  return dbUnavailable(err) ?? (isAppError(err) ? err : undefined);
}

export function judgeFailure(err: unknown): { kind: FailureKind; error: JobError } {
  const app = asAppError(err);
  if (app === undefined) {
    const retryable = !(err !== null && typeof err === 'object' && (err as { retryable?: unknown }).retryable === false);
    return { kind: retryable ? 'retryable' : 'permanent', error: safeJobError('internal', '') };
  }
  const error = safeJobError(app.code, app.message);
  if (TRANSIENT.has(app.code)) return { kind: 'transient', error };
  return { kind: app.status < 500 ? 'permanent' : 'retryable', error };
}
