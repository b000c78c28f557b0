/**
 * What the HTTP layer is built from (`AppDeps`) and what each request carries (`AppEnv`). The
 * composition root (src/server.ts) or a test builds AppDeps; routers read them from the context,
 * so route definitions stay static and the OpenAPI document can be built without a database.
 */
import type { Logger } from '../log.js';
import type { ServingEngine } from '../serve/index.js';
import type { Metrics } from '../metrics.js';
import type { Authenticator, Principal } from '../services/auth.js';
import type { ServiceDeps } from '../services/context.js';
import type { ConcurrencyLimiter, RateLimiter } from '../services/limits.js';
import type { VersionResolver } from '../services/version-resolver.js';

/** Readiness and shutdown state shared by the server and the health routes. */
export interface Lifecycle {
  /** True once SIGTERM (or close) began: /readyz fails and new requests are refused. */
  readonly shuttingDown: boolean;
  /** Aborts when shutdown begins; long-lived responses (SSE) end on it. */
  readonly signal: AbortSignal;
  /** Extra readiness checks by name (e.g. the serving engine); each returns a reason when not ready. */
  readonly checks: Readonly<Record<string, () => Promise<string | undefined> | string | undefined>>;
}

export interface AppDeps extends ServiceDeps {
  /** Classify requests of every tenant, batched over the shared backbone. */
  engine: ServingEngine;
  metrics: Metrics;
  auth: Authenticator;
  resolver: VersionResolver;
  limiter: RateLimiter;
  /** Data set uploads in progress per tenant (UPLOADS_PER_TENANT). */
  uploads: ConcurrencyLimiter;
  lifecycle: Lifecycle;
}

export interface AppVariables {
  deps: AppDeps;
  requestId: string;
  log: Logger;
  /** The route template as documented (e.g. /v1/datasets/{datasetId}); set by every route. */
  route: string;
  /** Set by tenant-key routes. */
  principal: Principal;
  /** Set by tenant-key routes (for logs). */
  tenantId: string;
}

export interface AppEnv {
  Variables: AppVariables;
}
