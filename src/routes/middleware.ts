/**
 * Middleware every request passes through (request id, structured log line, metrics, shutdown
 * gate) and the per-route pieces `defineRoute` attaches (route label, authentication, scopes,
 * rate limit).
 */
import { randomUUID } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import { AppError } from '../errors.js';
import { bearerToken, isAdminToken, requireScope, type Scope } from '../services/auth.js';
import { settleBody } from './body.js';
import type { AppDeps, AppEnv } from './env.js';
import { errorResponse } from './errors.js';

const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;

/** Paths that keep answering while the server shuts down (probes and scrapes). */
const ALWAYS_OPEN = new Set(['/healthz', '/readyz', '/metrics']);
/** Paths logged at debug level: probes and scrapes would drown everything else. */
const QUIET = ALWAYS_OPEN;

export function requestContext(deps: AppDeps): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const started = process.hrtime.bigint();
    const incoming = c.req.header('x-request-id');
    const requestId = incoming !== undefined && REQUEST_ID_RE.test(incoming) ? incoming : randomUUID();
    const log = deps.log.child({ requestId });
    c.set('deps', deps);
    c.set('requestId', requestId);
    c.set('log', log);
    c.header('x-request-id', requestId);
    const path = c.req.path;
    if (deps.lifecycle.shuttingDown && !ALWAYS_OPEN.has(path)) {
      c.header('connection', 'close');
      c.res = errorResponse(c, new AppError('unavailable', 'shutting down', { retryAfterSeconds: 1 }), requestId, log);
    } else {
      await next();
    }
    // Before the answer leaves: what the client is still sending of a refused body is discarded
    // (bounded), so it reads the answer instead of a reset connection.
    await settleBody(c, { maxBytes: deps.config.HTTP_DISCARD_MAX_BYTES, maxMs: deps.config.HTTP_DISCARD_MAX_MS });
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const route = c.get('route') ?? 'unmatched';
    const status = c.res.status;
    deps.metrics.observeRequest({ method: c.req.method, route, status }, seconds);
    const line = {
      method: c.req.method,
      route,
      path,
      status,
      latencyMs: Math.round(seconds * 1e6) / 1e3,
      tenantId: c.get('tenantId'),
    };
    if (QUIET.has(path) && status < 500) log.debug(line, 'request');
    else log.info(line, 'request');
  };
}

/** How a route authenticates; also written into the OpenAPI document. */
export type RouteAuth = { kind: 'public' } | { kind: 'admin' } | { kind: 'tenant'; scopes: readonly Scope[] };

export function labelRoute(route: string): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    c.set('route', route);
    await next();
  };
}

export function authenticate(auth: RouteAuth): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    if (auth.kind === 'public') return next();
    const deps = c.get('deps');
    const token = bearerToken(c.req.header('authorization'));
    if (auth.kind === 'admin') {
      if (deps.config.ADMIN_TOKEN === undefined) {
        throw new AppError('forbidden', 'tenant administration is disabled: set ADMIN_TOKEN to enable it');
      }
      if (!isAdminToken(deps.config, token)) throw new AppError('unauthenticated', 'missing or invalid admin token');
      return next();
    }
    const principal = await deps.auth.authenticate(token, c.get('requestId'));
    c.set('principal', principal);
    c.set('tenantId', principal.tenantId);
    c.set('log', c.get('log').child({ tenantId: principal.tenantId }));
    requireScope(principal, auth.scopes);
    deps.limiter.take(principal.tenantId);
    return next();
  };
}
