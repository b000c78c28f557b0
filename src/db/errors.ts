/**
 * The one place database errors become AppErrors. Both drivers (postgres-js and PGlite) report the
 * SQLSTATE in `code`, but drizzle wraps them in a DrizzleQueryError, so we walk the cause chain.
 */
import { AppError, isAppError } from '../errors.js';

/** What a constraint violation means to a caller, by constraint name (e.g. 'api_keys_prefix_uq'). */
export type ConstraintMessages = Record<string, string>;

interface PgErrorLike {
  code: string;
  message: string;
  detail?: string;
  constraint?: string;
  constraint_name?: string;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Ids reach us from URLs; a string that is not a uuid names nothing, rather than being a db error. */
export function isUuid(value: string): boolean {
  return UUID_RE.test(value);
}

function findPgError(err: unknown): PgErrorLike | undefined {
  let cur: unknown = err;
  for (let depth = 0; depth < 5 && cur !== null && typeof cur === 'object'; depth++) {
    const code = (cur as { code?: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return cur as PgErrorLike;
    cur = (cur as { cause?: unknown }).cause;
  }
  return undefined;
}

const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'CONNECTION_CLOSED', 'CONNECT_TIMEOUT', 'CONNECTION_ENDED', 'CONNECTION_DESTROYED']);

function findConnectionError(err: unknown): string | undefined {
  let cur: unknown = err;
  for (let depth = 0; depth < 5 && cur !== null && typeof cur === 'object'; depth++) {
    const code = (cur as { code?: unknown }).code;
    if (typeof code === 'string' && CONNECTION_CODES.has(code)) return code;
    cur = (cur as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * Map a thrown database error to an AppError: unique violation → already_exists, foreign key →
 * not_found (the referenced row is missing) or conflict (a row is still referenced), serialization
 * failures and lost connections → unavailable. Anything else is returned unchanged.
 */
export function mapDbError(err: unknown, messages: ConstraintMessages = {}): unknown {
  if (isAppError(err)) return err;
  const pg = findPgError(err);
  if (pg === undefined) {
    const conn = findConnectionError(err);
    if (conn !== undefined) {
      return new AppError('unavailable', `database unreachable (${conn})`, { cause: err, retryAfterSeconds: 1 });
    }
    return err;
  }
  const constraint = pg.constraint ?? pg.constraint_name;
  const named = constraint === undefined ? undefined : messages[constraint];
  const details = constraint === undefined ? undefined : { constraint };
  switch (pg.code) {
    case '23505':
      return new AppError('already_exists', named ?? 'already exists', { cause: err, details });
    case '23503': {
      const text = `${pg.message} ${pg.detail ?? ''}`;
      if (/still referenced/i.test(text)) {
        return new AppError('conflict', named ?? 'still referenced by other records', { cause: err, details });
      }
      return new AppError('not_found', named ?? 'referenced record not found', { cause: err, details });
    }
    case '23514':
    case '23502':
    case '22P02':
    case '22003':
      return new AppError('validation_failed', named ?? `invalid value: ${pg.message}`, { cause: err, details });
    case '40001':
    case '40P01':
    case '55P03':
      return new AppError('unavailable', 'database busy, retry', { cause: err, retryAfterSeconds: 1 });
    case '57P01':
    case '57P03':
    case '08000':
    case '08003':
    case '08006':
      return new AppError('unavailable', `database unavailable (${pg.code})`, { cause: err, retryAfterSeconds: 1 });
    default:
      return err;
  }
}

/** Run a database call and rethrow its failure mapped by mapDbError. */
export async function dbCall<T>(fn: () => Promise<T>, messages?: ConstraintMessages): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw mapDbError(err, messages);
  }
}
