/** Small helpers shared by the repositories. */
import { asc, desc, sql, type SQL } from 'drizzle-orm';
import type { AnyPgColumn } from 'drizzle-orm/pg-core';
import { AppError, notFound } from '../../errors.js';
import { isUuid } from '../errors.js';

/** A position in a list: the (created_at, id) of the last row seen. */
export interface Cursor {
  at: Date;
  id: string;
}

export interface Page {
  /** At most this many rows (default 100, capped at 1001: a page of 1000 and a look at the next). */
  limit?: number;
  /** Deprecated with cursors: rows to skip. */
  offset?: number;
  /** Only rows after this one, in the list's order. */
  after?: Cursor;
}

export function pageOf(page: Page = {}): { limit: number; offset: number } {
  const limit = Math.min(Math.max(Math.trunc(page.limit ?? 100), 1), 1001);
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

type Keyed = { createdAt: AnyPgColumn; id: AnyPgColumn };

/**
 * created_at to the millisecond: what a cursor can carry (a JS Date). Lists order by it and the
 * id, and cursors compare against the same expression, so rows written within one millisecond
 * are neither skipped nor repeated.
 */
const atMs = (t: Keyed) => sql`date_trunc('milliseconds', ${t.createdAt})`;

/** The keyset order of a list: (created_at, id), oldest or newest first. */
export function keysetOrder(t: Keyed, dir: 'asc' | 'desc'): SQL[] {
  return dir === 'asc' ? [asc(atMs(t)), asc(t.id)] : [desc(atMs(t)), desc(t.id)];
}

/** Rows after `cursor` in that order (undefined: no condition). */
export function afterCursor(t: Keyed, dir: 'asc' | 'desc', cursor: Cursor | undefined): SQL | undefined {
  if (cursor === undefined) return undefined;
  const at = cursor.at.toISOString();
  return dir === 'asc'
    ? sql`(${atMs(t)}, ${t.id}) > (${at}::timestamptz, ${cursor.id}::uuid)`
    : sql`(${atMs(t)}, ${t.id}) < (${at}::timestamptz, ${cursor.id}::uuid)`;
}
