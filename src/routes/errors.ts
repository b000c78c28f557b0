/**
 * The one place a thrown error becomes an HTTP response: {error: {code, message, requestId,
 * details?}} with the status that errors.ts assigns to the code. 4xx errors say what was wrong;
 * 5xx errors are logged in full with the request id and answered with a fixed message per code,
 * so no path, URL, SQL or stack ever reaches a client.
 */
import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import { ZodError } from 'zod';
import { dbUnavailable, mapDbError } from '../db/errors.js';
import { AppError, ERROR_CODES, isAppError, publicMessage, retryAfterOf, validationError, type ErrorCode } from '../errors.js';
import type { Logger } from '../log.js';

export interface ErrorBody {
  error: { code: ErrorCode; message: string; requestId: string; details?: Record<string, unknown> };
}

function fromHttpException(err: HTTPException): AppError {
  const message = err.message || 'request rejected';
  switch (err.status) {
    case 413:
      return new AppError('payload_too_large', message);
    case 415:
      return new AppError('unsupported_media_type', message);
    case 401:
      return new AppError('unauthenticated', message);
    case 403:
      return new AppError('forbidden', message);
    case 404:
      return new AppError('not_found', message);
    default:
      return err.status < 500 ? new AppError('bad_request', message) : new AppError('internal', 'internal error', { cause: err });
  }
}

/**
 * Normalise anything thrown into an AppError. A database that is unreachable, refusing, closed or
 * busy is 'unavailable' (503 + Retry-After) wherever it was raised — inside `dbCall` or not, bare
 * or wrapped in an 'internal' AppError; other unknown errors become 'internal'.
 */
export function toAppError(err: unknown): AppError {
  if (isAppError(err)) return err.code === 'internal' ? (dbUnavailable(err) ?? err) : err;
  if (err instanceof HTTPException) return fromHttpException(err);
  // A schema check below the routes that threw instead of returning an AppError: still the caller's input.
  if (err instanceof ZodError) return validationError(err);
  // A database error raised outside dbCall (most reads): mapped by the same rules, so an outage is 503 and
  // a value the database refuses is the caller's 400, never 500.
  const mapped = mapDbError(err);
  return isAppError(mapped) ? mapped : new AppError('internal', 'internal error', { cause: err });
}

export function errorBody(err: AppError, requestId: string): { status: number; body: ErrorBody } {
  const status = ERROR_CODES[err.code];
  const internal = status >= 500;
  const message = internal ? publicMessage(err.code) : err.message;
  const body: ErrorBody = { error: { code: err.code, message, requestId } };
  if (!internal && err.details !== undefined) body.error.details = err.details;
  return { status, body };
}

/** Build the response for `err`, logging 5xx errors with their cause and counting limit refusals. */
export function errorResponse(
  c: Context,
  raw: unknown,
  requestId: string,
  log: Logger,
  onRefused?: (code: ErrorCode) => void,
): Response {
  const err = toAppError(raw);
  const { status, body } = errorBody(err, requestId);
  if (status === 429) onRefused?.(err.code);
  if (status >= 500) {
    log.error({ err: raw, code: err.code, requestId }, 'request failed');
  }
  const headers: Record<string, string> = { 'content-type': 'application/json; charset=utf-8' };
  if (status === 401) {
    // RFC 6750: say which scheme to use, and that the token sent (if any) was not accepted.
    const realm = c.get('route') === '/metrics' ? 'metrics' : 'dtl-host';
    headers['www-authenticate'] = `Bearer realm="${realm}"${c.req.header('authorization') === undefined ? '' : ', error="invalid_token"'}`;
  }
  const retryAfter = retryAfterOf(err);
  if (retryAfter !== undefined) headers['retry-after'] = String(Math.max(1, Math.ceil(retryAfter)));
  return c.body(JSON.stringify(body), status as 400, headers);
}
