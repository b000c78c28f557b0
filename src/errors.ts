/**
 * One error family for the whole service. Every failure that reaches a caller is an AppError with a
 * code from this closed set; the HTTP layer maps codes to statuses in exactly one place (here), so a
 * code never changes meaning between routes. Add a code here (and only here) when a new failure mode
 * needs its own stable name.
 */
import type { ZodError } from 'zod';

export const ERROR_CODES = {
  // 400 — the request itself is malformed
  bad_request: 400,
  validation_failed: 400,
  invalid_image: 400,
  invalid_archive: 400,
  invalid_dataset: 400,
  invalid_adapter: 400,
  invalid_backbone: 400,
  adapter_backbone_mismatch: 400,
  // 401 / 403 — authentication and authorisation
  unauthenticated: 401,
  forbidden: 403,
  // 404 — missing, or belonging to another tenant (indistinguishable on purpose)
  not_found: 404,
  // 409 — state conflicts
  conflict: 409,
  already_exists: 409,
  invalid_state: 409,
  /** The first request with this Idempotency-Key has not answered yet. */
  idempotency_key_in_use: 409,
  // 413 / 415 / 422
  payload_too_large: 413,
  unsupported_media_type: 415,
  unprocessable: 422,
  /** An Idempotency-Key already used with another request (method, path, query or body). */
  idempotency_key_reused: 422,
  // 429 — per-tenant limits
  rate_limited: 429,
  quota_exceeded: 429,
  queue_full: 429,
  // 5xx — our side
  internal: 500,
  unavailable: 503,
  deadline_exceeded: 503,
  storage_error: 503,
  database_locked: 503,
  config_invalid: 500,
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;
  /** Seconds a client should wait before retrying (429/503). */
  readonly retryAfterSeconds: number | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options: { details?: Record<string, unknown>; retryAfterSeconds?: number; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.details = options.details;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }

  get status(): number {
    return ERROR_CODES[this.code];
  }
}

export function isAppError(err: unknown): err is AppError {
  return err instanceof AppError;
}

export function httpStatusOf(code: ErrorCode): number {
  return ERROR_CODES[code];
}

/**
 * What a tenant may be told about a 5xx failure: a fixed sentence per code, never the error's own
 * message (which may name paths, URLs, buckets or SQL). Used by the HTTP layer and for the error
 * a failed job shows.
 */
const PUBLIC_5XX: Partial<Record<ErrorCode, string>> = {
  unavailable: 'the service is temporarily unavailable; retry later',
  deadline_exceeded: 'the request did not complete in time; retry later',
  storage_error: 'the storage backend is temporarily unavailable; retry later',
  database_locked: 'the database is temporarily unavailable; retry later',
};

/** The fixed public message of a 5xx code ('internal error' when it has none of its own). */
export function publicMessage(code: ErrorCode): string {
  return PUBLIC_5XX[code] ?? 'internal error';
}

/**
 * Seconds a client should wait before retrying a temporary failure whose thrower did not say:
 * every 503 carries Retry-After, so clients and proxies back off instead of hammering an outage.
 */
const DEFAULT_RETRY_AFTER: Partial<Record<ErrorCode, number>> = {
  unavailable: 2,
  storage_error: 5,
  database_locked: 2,
  deadline_exceeded: 1,
};

export function retryAfterOf(err: AppError): number | undefined {
  return err.retryAfterSeconds ?? DEFAULT_RETRY_AFTER[err.code];
}

/** Shorthand for the most common throw: a typed not-found that names the kind of object. */
export function notFound(kind: string, id?: string): AppError {
  return new AppError('not_found', id === undefined ? `${kind} not found` : `${kind} '${id}' not found`);
}

export interface ValidationIssue {
  /** Dotted path to the offending value ('' for the value as a whole). */
  path: string;
  message: string;
}

/** Each issue of a zod failure; `field` names the value parsed when it was a single field. */
export function zodIssues(err: ZodError, field?: string): ValidationIssue[] {
  return err.issues.map((i) => ({ path: [...(field === undefined ? [] : [field]), ...i.path.map(String)].join('.'), message: i.message }));
}

/** 'a.b: message; c: message' (a whole-value failure shows its message alone). */
export function describeZodError(err: ZodError, field?: string): string {
  return zodIssues(err, field)
    .map((i) => (i.path === '' ? i.message : `${i.path}: ${i.message}`))
    .join('; ');
}

/**
 * The one conversion of a zod failure on caller input into the error family: validation_failed
 * naming each field, the issues in `details`. `context` prefixes the message ('invalid hyperparameters').
 */
export function validationError(err: ZodError, opts: { field?: string; context?: string } = {}): AppError {
  const text = describeZodError(err, opts.field);
  return new AppError('validation_failed', opts.context === undefined ? text : `${opts.context}: ${text}`, { details: { issues: zodIssues(err, opts.field) } });
}

