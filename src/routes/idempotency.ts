/**
 * The `Idempotency-Key` header on creating POSTs (`defineRoute(..., { idempotent })`): a retry
 * with the same key and request gets the first 2xx answer again (`Idempotent-Replayed: true`) and
 * creates nothing. What "the same request" means: method, path, query, media type and the body's
 * bytes; for streamed uploads (data sets, adapter files, up to UPLOAD_MAX_BYTES, never held in
 * memory) the body's Content-Length stands in for its bytes. A failed request frees its key.
 */
import type { MiddlewareHandler } from 'hono';
import { beginIdempotent, finishIdempotent, requestFingerprint } from '../services/idempotency.js';
import type { AppEnv } from './env.js';

export const IDEMPOTENCY_HEADER = 'idempotency-key';

/** `json`: the body is read whole and hashed; `streamed`: its length stands in for it. */
export type IdempotentBody = 'json' | 'streamed';

export function idempotent(body: IdempotentBody): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const key = c.req.header(IDEMPOTENCY_HEADER);
    if (key === undefined) return next();
    const deps = c.get('deps');
    const url = new URL(c.req.url);
    const mediaType = (c.req.header('content-type') ?? '').split(';')[0].trim().toLowerCase();
    const payload = body === 'json' ? new Uint8Array(await c.req.arrayBuffer()) : `length:${c.req.header('content-length') ?? 'chunked'}`;
    const fingerprint = requestFingerprint([c.req.method, url.pathname, url.search, mediaType, payload]);
    // Admin routes have no principal: the admin token's keys are one scope of their own.
    const scope = { tenantId: c.get('principal')?.tenantId ?? null, key };
    const stored = await beginIdempotent({ deps, scope, fingerprint });
    if (stored !== undefined) {
      return c.body(stored.body, stored.status as 200, { 'content-type': stored.contentType, 'idempotent-replayed': 'true' });
    }
    await next();
    const res = c.res;
    const answer =
      res.status >= 200 && res.status < 300
        ? { status: res.status, contentType: res.headers.get('content-type') ?? 'application/json', body: await res.clone().text() }
        : undefined;
    await finishIdempotent({ deps, scope, answer }).catch((err: unknown) => {
      // The thing was created; a retry within the abandon window is refused as in progress, later it runs again.
      c.get('log').error({ err, idempotencyKey: key }, 'storing the idempotent answer failed');
    });
  };
}
