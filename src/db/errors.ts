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

/** Node socket errors and postgres-js's own connection failures (`Errors.connection`). */
const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'CONNECTION_CLOSED',
  'CONNECT_TIMEOUT',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
]);

/**
 * SQLSTATEs that say the server cannot serve us now rather than that the statement was wrong:
 * class 08 (connection exception), 57P01–57P05 (admin / crash shutdown, cannot connect now,
 * database dropped, idle session timeout), 53300 (too many connections), and 55000 when it is
 * the "database … is not currently accepting connections" refusal (ALLOW_CONNECTIONS false).
 */
function unavailableState(pg: PgErrorLike): boolean {
  const { code } = pg;
  if (code.startsWith('08') || /^57P0[1-5]$/.test(code) || code === '53300') return true;
  return code === '55000' && /not currently accepting connections/i.test(pg.message);
}

/** Serialization failure, deadlock, lock not available: the same statement may well succeed next time. */
const BUSY_STATES = new Set(['40001', '40P01', '55P03']);

/** PGlite's own refusals once its handle is closed (it has no SQLSTATE for them). */
const PGLITE_CLOSED = /^PGlite is clos(ed|ing)\b/;

/**
 * The first error in the cause chain (drizzle wraps driver errors) that `test` accepts. The walk
 * stops at an AppError other than 'internal': its layer already said what it means (a
 * storage_error caused by a refused S3 connection is not a database outage).
 */
function inChain<T>(err: unknown, test: (e: object) => T | undefined): T | undefined {
  let cur: unknown = err;
  for (let depth = 0; depth < 6 && cur !== null && typeof cur === 'object'; depth++) {
    if (isAppError(cur) && cur.code !== 'internal') return undefined;
    const hit = test(cur);
    if (hit !== undefined) return hit;
    cur = (cur as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * The database could not serve the call — unreachable, shutting down, refusing connections,
 * closed (PGlite), or busy with a conflicting transaction — found anywhere in the cause chain:
 * an AppError 'unavailable' with a Retry-After, or undefined for any other error. The HTTP layer
 * and the job worker consult this for errors raised outside `dbCall`, so every database
 * unavailability is a 503 / a transient job failure however it was raised.
 */
export function dbUnavailable(err: unknown): AppError | undefined {
  const reason = inChain(err, (e) => {
    const code = (e as { code?: unknown }).code;
    const message = (e as { message?: unknown }).message;
    if (typeof code === 'string') {
      if (CONNECTION_CODES.has(code)) return `database unreachable (${code})`;
      if (/^[0-9A-Z]{5}$/.test(code)) {
        const pg = { code, message: typeof message === 'string' ? message : '' };
        if (unavailableState(pg)) return `database unavailable (${code})`;
        if (BUSY_STATES.has(code)) return 'database busy, retry';
      }
    }
    if (typeof message === 'string' && PGLITE_CLOSED.test(message)) return 'database closed';
    return undefined;
  });
  return reason === undefined ? undefined : new AppError('unavailable', reason, { cause: err, retryAfterSeconds: 1 });
}

/**
 * Map a thrown database error to an AppError: unique violation → already_exists, foreign key →
 * not_found (the referenced row is missing) or conflict (a row is still referenced), serialization
 * failures, lost connections and a closed or refusing database → unavailable (dbUnavailable).
 * Anything else is returned unchanged.
 */
export function mapDbError(err: unknown, messages: ConstraintMessages = {}): unknown {
  if (isAppError(err)) return err;
  const unavailable = dbUnavailable(err);
  if (unavailable !== undefined) return unavailable;
  const pg = findPgError(err);
  if (pg === undefined) return err;
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
    case '22021':
    case '22P05':
      // PostgreSQL text cannot hold NUL (or bytes outside UTF-8): the caller sent it, not our fault.
      return new AppError('validation_failed', 'text contains a character that cannot be stored (NUL or invalid UTF-8)', { cause: err });
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
