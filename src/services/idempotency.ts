/**
 * Idempotency-Key for creating POSTs: the first request with a key runs and its answer is kept
 * (IDEMPOTENCY_TTL_MS); a retry with the same key and the same request gets that answer and
 * creates nothing; the same key with another request is refused. Keys are per tenant (or per
 * admin token), so two tenants never see each other's answers.
 */
import { createHash } from 'node:crypto';
import * as repo from '../db/repos/idempotency.js';
import { AppError } from '../errors.js';
import type { ServiceDeps } from './context.js';

/** Printable ASCII, as the IETF draft and most providers accept; long enough for a UUID or a hash. */
export const IDEMPOTENCY_KEY_RE = /^[\x21-\x7e]{1,255}$/;
/** Without a request timeout, a first request silent this long is taken for dead. */
const ABANDONED_DEFAULT_MS = 10 * 60 * 1000;

export interface StoredAnswer {
  status: number;
  contentType: string;
  body: string;
}

export interface IdempotencyScope {
  /** The tenant of the calling key, or null for the admin token. */
  tenantId: string | null;
  key: string;
}

/** sha256 over the parts that make two requests "the same request". */
export function requestFingerprint(parts: readonly (string | Uint8Array)[]): string {
  const h = createHash('sha256');
  for (const p of parts) {
    const bytes = typeof p === 'string' ? Buffer.from(p, 'utf8') : p;
    h.update(`${bytes.length}:`).update(bytes);
  }
  return h.digest('hex');
}

function scopeOf(s: IdempotencyScope): string {
  return s.tenantId ?? 'admin';
}

/**
 * Claims the key for this request (`undefined`: run it, then `finish`), or returns the stored
 * answer of the first request with the same fingerprint. Another request under the key is
 * `idempotency_key_reused` (422); the first one still running is `idempotency_key_in_use` (409).
 */
export async function beginIdempotent({
  deps,
  scope,
  fingerprint,
}: {
  deps: Pick<ServiceDeps, 'database' | 'config'>;
  scope: IdempotencyScope;
  fingerprint: string;
}): Promise<StoredAnswer | undefined> {
  if (!IDEMPOTENCY_KEY_RE.test(scope.key)) {
    throw new AppError('validation_failed', 'Idempotency-Key: 1 to 255 printable ASCII characters', { details: { header: 'Idempotency-Key' } });
  }
  const now = Date.now();
  const abandonMs = deps.config.HTTP_REQUEST_TIMEOUT_MS > 0 ? deps.config.HTTP_REQUEST_TIMEOUT_MS : ABANDONED_DEFAULT_MS;
  const result = await repo.claim(deps.database.db, {
    scope: scopeOf(scope),
    key: scope.key,
    tenantId: scope.tenantId,
    fingerprint,
    expiresAt: new Date(now + deps.config.IDEMPOTENCY_TTL_MS),
    abandonedBefore: new Date(now - abandonMs),
  });
  if (result.claimed) return undefined;
  const { record } = result;
  if (record.status === null) {
    throw new AppError('idempotency_key_in_use', 'the first request with this Idempotency-Key is still running; retry when it has answered', {
      retryAfterSeconds: 1,
    });
  }
  if (record.fingerprint !== fingerprint) {
    throw new AppError(
      'idempotency_key_reused',
      'this Idempotency-Key was used with a different request (method, path, query or body); use a new key for a new request',
    );
  }
  return { status: record.status, contentType: record.contentType ?? 'application/json', body: record.body ?? '' };
}

/** Stores the answer of a claimed request, or frees the key when it failed (the client may retry). */
export async function finishIdempotent({
  deps,
  scope,
  answer,
}: {
  deps: Pick<ServiceDeps, 'database'>;
  scope: IdempotencyScope;
  answer: StoredAnswer | undefined;
}): Promise<void> {
  if (answer === undefined) await repo.release(deps.database.db, scopeOf(scope), scope.key);
  else await repo.complete(deps.database.db, scopeOf(scope), scope.key, answer);
}
