/**
 * Cursor pagination of the list routes: `?limit=N&cursor=C` → `{items, nextCursor}` plus
 * `Link: <absolute url>; rel="next"` while more follow. A cursor is the (created_at, id) of a page's
 * last item, base64url-encoded: opaque to clients, and stable under inserts (offsets are not:
 * a row added in between shifts every later page). `offset` still works, deprecated.
 */
import type { Context } from 'hono';
import type { Cursor } from '../db/repos/util.js';
import { AppError } from '../errors.js';
import type { AppEnv } from './env.js';
import { absoluteUrl } from './links.js';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function encodeCursor(c: Cursor): string {
  return Buffer.from(`${c.at.getTime()}.${c.id}`, 'utf8').toString('base64url');
}

export function decodeCursor(text: string): Cursor {
  const m = /^(\d{1,15})\.(.+)$/.exec(Buffer.from(text, 'base64url').toString('utf8'));
  if (m === null || !UUID_RE.test(m[2])) {
    throw new AppError('validation_failed', "cursor: not a cursor this service gave out (use a page's nextCursor as it is)", { details: { field: 'cursor' } });
  }
  return { at: new Date(Number(m[1])), id: m[2] };
}

export interface PageParams {
  limit: number;
  offset: number;
  cursor?: string;
}

/**
 * Reads one page: `fetch` is asked for one row more than the page, which tells whether another
 * page follows without a count.
 */
export async function readPage<T, D>(
  c: Context<AppEnv>,
  q: PageParams,
  fetch: (page: { limit: number; offset: number; after?: Cursor }) => Promise<T[]>,
  keyOf: (row: T) => Cursor,
  dto: (row: T) => D,
): Promise<{ items: D[]; nextCursor: string | null }> {
  if (q.cursor !== undefined && q.offset > 0) throw new AppError('validation_failed', 'offset: not with cursor (offset is deprecated; follow nextCursor)');
  const after = q.cursor === undefined ? undefined : decodeCursor(q.cursor);
  const rows = await fetch({ limit: q.limit + 1, offset: q.offset, after });
  const page = rows.slice(0, q.limit);
  const last = page.at(-1);
  const nextCursor = rows.length > q.limit && last !== undefined ? encodeCursor(keyOf(last)) : null;
  if (nextCursor !== null) {
    const next = new URLSearchParams(new URL(c.req.url).searchParams);
    next.delete('offset');
    next.set('cursor', nextCursor);
    c.header('link', `<${absoluteUrl(c, next)}>; rel="next"`);
  }
  return { items: page.map(dto), nextCursor };
}

/** Where a row sits in its list: its cursor's parts. */
export const keyOf = (row: { createdAt: Date; id: string }): Cursor => ({ at: row.createdAt, id: row.id });
