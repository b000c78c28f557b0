/**
 * One error family for the whole service. Every failure that reaches a caller is an AppError with a
 * code from this closed set; the HTTP layer maps codes to statuses in exactly one place (here), so a
 * code never changes meaning between routes. Add a code here (and only here) when a new failure mode
 * needs its own stable name.
 */
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
  // 413 / 415 / 422
  payload_too_large: 413,
  unsupported_media_type: 415,
  unprocessable: 422,
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

/** Shorthand for the most common throw: a typed not-found that names the kind of object. */
export function notFound(kind: string, id?: string): AppError {
  return new AppError('not_found', id === undefined ? `${kind} not found` : `${kind} '${id}' not found`);
}
