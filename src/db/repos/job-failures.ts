/**
 * What a failed job attempt leaves behind, and how transient failures are retried.
 *
 * A job's `error` is what its tenant sees, stored as `<code>: <message>` (JobError): the worker
 * writes only tenant-safe text, and jobErrorOf reads it back through the same rule, so a row
 * written before that rule existed shows no internals either.
 *
 * Transient failures (storage or database out of reach) are counted from the job's own status
 * events (`transient: true`), so no column is needed for them.
 */
import { and, eq, sql } from 'drizzle-orm';
import { ERROR_CODES, publicMessage, type ErrorCode } from '../../errors.js';
import type { Db } from '../open.js';
import { jobEvents } from '../schema.js';
import type { Backoff } from './jobs.js';

/**
 * Retries of failures that say nothing about the job (storage or database briefly unreachable):
 * they do not use up an attempt; the delay grows from base, doubling, to max; once `budgetMs` has
 * passed since the job's first such failure, they count as ordinary failed attempts again, so a
 * store that stays broken still ends the job.
 */
export interface TransientBackoff extends Backoff {
  budgetMs: number;
}

/** About ten minutes of retries: 2 s, 4 s, … 60 s, 60 s, … */
export const DEFAULT_TRANSIENT_BACKOFF: TransientBackoff = { baseMs: 2_000, maxMs: 60_000, budgetMs: 10 * 60_000 };

/** How a failed attempt counts: transient (retried without using an attempt), retryable, or permanent. */
export type FailureKind = 'transient' | 'retryable' | 'permanent';

/** What a job's tenant is told about its failure: a stable code and a message safe to show. */
export interface JobError {
  code: ErrorCode;
  message: string;
}

const INTERNAL: JobError = { code: 'internal', message: publicMessage('internal') };

function isCode(code: string): code is ErrorCode {
  return Object.hasOwn(ERROR_CODES, code);
}

/** A JobError fit for a tenant: 4xx messages as given, any 5xx the fixed message of its code. */
export function safeJobError(code: string, message: string): JobError {
  if (!isCode(code)) return INTERNAL;
  return ERROR_CODES[code] >= 500 ? { code, message: publicMessage(code) } : { code, message };
}

export function formatJobError(e: JobError): string {
  return `${e.code}: ${e.message}`;
}

/** The job's worker stopped heartbeating (crashed, killed, or cut off); details are in its logs. */
export const LEASE_EXPIRED: JobError = { code: 'internal', message: 'the worker running the job stopped before it finished' };

/** The stored error of a job as its tenant may see it (anything unrecognised → internal). */
export function jobErrorOf(stored: string | null): JobError | null {
  if (stored === null) return null;
  if (stored === formatJobError(LEASE_EXPIRED)) return LEASE_EXPIRED;
  const m = /^([a-z_]+): ([\s\S]*)$/.exec(stored);
  return m === null ? INTERNAL : safeJobError(m[1], m[2]);
}

/** The job's earlier transient failures: how many, and milliseconds since the first (by the db clock). */
export async function transientHistory(tx: Db, jobId: string): Promise<{ count: number; sinceMs: number }> {
  const [row] = await tx
    .select({
      count: sql<number>`count(*)::int`,
      sinceMs: sql<number | null>`(extract(epoch from now() - min(${jobEvents.at})) * 1000)::float8`,
    })
    .from(jobEvents)
    .where(and(eq(jobEvents.jobId, jobId), eq(jobEvents.type, 'status'), sql`${jobEvents.data}->>'transient' = 'true'`));
  return { count: Number(row?.count ?? 0), sinceMs: Number(row?.sinceMs ?? 0) };
}
