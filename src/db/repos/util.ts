/** Small helpers shared by the repositories. */
import { AppError, notFound } from '../../errors.js';
import { isUuid } from '../errors.js';

export interface Page {
  /** At most this many rows (default 100, capped at 1000). */
  limit?: number;
  offset?: number;
}

export function pageOf(page: Page = {}): { limit: number; offset: number } {
  const limit = Math.min(Math.max(Math.trunc(page.limit ?? 100), 1), 1000);
  const offset = Math.max(Math.trunc(page.offset ?? 0), 0);
  return { limit, offset };
}

/** An id from outside that is not a uuid cannot name a row: not_found, like any unknown id. */
export function requireId(id: string, kind: string): void {
  if (!isUuid(id)) throw notFound(kind, id);
}

/** The single row of a result, or a typed not-found. */
export function one<T>(rows: T[], kind: string, id?: string): T {
  const row = rows[0];
  if (row === undefined) throw notFound(kind, id);
  return row;
}

export function invalidState(message: string, details?: Record<string, unknown>): AppError {
  return new AppError('invalid_state', message, { details });
}
