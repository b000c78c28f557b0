/**
 * How every route is declared: an OpenAPI route config plus how it authenticates. `defineRoute`
 * adds the standard error responses, the security requirement, the `x-dtl-auth`/`x-dtl-scopes`
 * extensions (the isolation tests are generated from them) and the per-route middleware (route
 * label for logs and metrics, authentication, scope check, rate limit).
 */
import { OpenAPIHono, createRoute, z, type RouteConfig } from '@hono/zod-openapi';
import { bodyLimit } from 'hono/body-limit';
import { AppError, validationError } from '../errors.js';
import type { ZodError } from 'zod';
import type { Scope } from '../services/auth.js';
import type { AppEnv } from './env.js';
import { IDEMPOTENCY_HEADER, idempotent, type IdempotentBody } from './idempotency.js';
import { authenticate, labelRoute, type RouteAuth } from './middleware.js';
import { ErrorSchema } from './schemas.js';

export const auth = {
  public: { kind: 'public' } as const,
  admin: { kind: 'admin' } as const,
  /** A tenant API key holding at least one of `scopes` (none listed = any key). */
  tenant: (...scopes: Scope[]): RouteAuth => ({ kind: 'tenant', scopes }),
};

const ERROR_TEXT: Record<number, string> = {
  400: 'Invalid request (validation_failed, bad_request, …).',
  401: 'Missing, malformed, unknown or revoked credentials (unauthenticated).',
  403: 'The API key lacks a required scope (forbidden).',
  404: 'No such object for this tenant (not_found) — another tenant’s object looks exactly the same.',
  409: 'State conflict (conflict, already_exists, invalid_state, idempotency_key_in_use).',
  413: 'Body larger than the limit (payload_too_large).',
  415: 'Content type not accepted (unsupported_media_type).',
  422: 'Well-formed but unusable (unprocessable, idempotency_key_reused).',
  429: 'Rate limit, quota or queue full (rate_limited, quota_exceeded, queue_full); see Retry-After.',
  500: 'Internal error (details are in the server log under the request id).',
  503: 'Temporarily unavailable (unavailable, deadline_exceeded, storage_error); see Retry-After.',
};

export function errorResponses(...statuses: number[]) {
  const out: Record<number, { description: string; content: { 'application/json': { schema: typeof ErrorSchema } } }> = {};
  for (const s of statuses) out[s] = { description: ERROR_TEXT[s] ?? 'Error', content: { 'application/json': { schema: ErrorSchema } } };
  return out;
}

export type ApiRoute = RouteConfig & { 'x-dtl-auth': RouteAuth['kind']; 'x-dtl-scopes': readonly Scope[] };

/** JSON request bodies are small; they are read whole (by the validator), so they are capped. */
export const JSON_BODY_MAX_BYTES = 1024 * 1024;

const jsonLimit = bodyLimit({
  maxSize: JSON_BODY_MAX_BYTES,
  onError: () => {
    throw new AppError('payload_too_large', `JSON bodies are limited to ${JSON_BODY_MAX_BYTES} bytes`, { details: { maxBytes: JSON_BODY_MAX_BYTES } });
  },
});

/** Whether the route declares a JSON body that zod validates (read whole); streamed bodies count their own bytes. */
function hasValidatedJsonBody(config: Omit<RouteConfig, 'middleware' | 'security'>): boolean {
  const content = config.request?.body?.content ?? {};
  return Object.entries(content).some(([type, media]) => /json/i.test(type) && typeof ((media as { schema?: { safeParse?: unknown } } | undefined)?.schema?.safeParse) === 'function');
}

const IdempotencyHeaders = z.object({
  [IDEMPOTENCY_HEADER]: z
    .string()
    .max(255)
    .optional()
    .openapi({
      description:
        'Makes a retry safe: the same key with the same request (method, path, query, body; for uploads their Content-Length) within IDEMPOTENCY_TTL_MS ' +
        'returns the first 2xx answer (with `Idempotent-Replayed: true`) and creates nothing. Another request under the key: 422 idempotency_key_reused; ' +
        'the first still running: 409 idempotency_key_in_use. Keys are per tenant; 1–255 printable ASCII characters (e.g. a UUID).',
    }),
});

/**
 * Declare a route; its OpenAPI path (`/v1/x/{id}`) is also its label in logs and metrics.
 * `idempotent`: a creating POST that honours `Idempotency-Key` (how its body is fingerprinted).
 */
export function defineRoute<const R extends Omit<RouteConfig, 'middleware' | 'security'>>(
  routeAuth: RouteAuth,
  config: R,
  options: { idempotent?: IdempotentBody } = {},
) {
  const base = routeAuth.kind === 'public' ? [500, 503] : routeAuth.kind === 'admin' ? [401, 403, 500, 503] : [401, 403, 429, 500, 503];
  const security = routeAuth.kind === 'admin' ? [{ adminToken: [] }] : routeAuth.kind === 'tenant' ? [{ apiKey: [] }] : [];
  // Typed as declared: the header is read by the middleware, not through c.req.valid.
  const withHeader = (options.idempotent === undefined ? config : { ...config, request: { ...config.request, headers: IdempotencyHeaders } }) as R;
  const extra = options.idempotent === undefined ? [] : [409, 422];
  return createRoute({
    ...withHeader,
    responses: { ...errorResponses(...base, ...extra), ...config.responses } as R['responses'],
    security,
    'x-dtl-auth': routeAuth.kind,
    'x-dtl-scopes': routeAuth.kind === 'tenant' ? routeAuth.scopes : [],
    middleware: [
      labelRoute(config.path),
      authenticate(routeAuth),
      ...(hasValidatedJsonBody(config) ? [jsonLimit] : []),
      ...(options.idempotent === undefined ? [] : [idempotent(options.idempotent)]),
    ],
  });
}

/** Validation failures become one AppError shape, naming every field that failed. */
function validationHook(result: { success: true } | { success: false; error: ZodError }): void {
  if (!result.success) throw validationError(result.error);
}

export function newRouter(): OpenAPIHono<AppEnv> {
  return new OpenAPIHono<AppEnv>({ defaultHook: validationHook });
}
