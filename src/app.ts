/**
 * The HTTP application, built from its dependencies: used by src/server.ts to serve and by tests
 * through `app.request()` without a socket. Nothing here opens or closes resources.
 */
import { readFileSync } from 'node:fs';
import type { OpenAPIHono } from '@hono/zod-openapi';
import { JobQueue } from './jobs/queue.js';
import { TRAIN_JOB_KIND } from './train/job.js';
import { AppError } from './errors.js';
import { newRouter } from './routes/define.js';
import { docsRouter } from './routes/docs.js';
import type { AppDeps, AppEnv } from './routes/env.js';
import { errorResponse } from './routes/errors.js';
import { healthRouter } from './routes/health.js';
import { adaptersRouter } from './routes/adapters.js';
import { classifyRouter } from './routes/classify.js';
import { consoleRouter } from './routes/console/router.js';
import { datasetsRouter } from './routes/datasets.js';
import { jobsRouter } from './routes/jobs.js';
import { keysRouter } from './routes/keys.js';
import { requestContext } from './routes/middleware.js';
import { buildOpenApiDocument, registerSecuritySchemes, type OpenApiDocument } from './routes/openapi.js';
import { tenantsRouter } from './routes/tenants.js';

export type { AppDeps, AppEnv, Lifecycle } from './routes/env.js';

const VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/**
 * Point the metrics at what they report on: the engine's queue and adapter cache (read at scrape
 * time) and the job table (training jobs by status, across every process sharing the database);
 * per-tenant series only if the config enables them.
 */
export function connectMetrics(deps: Pick<AppDeps, 'metrics' | 'engine' | 'database' | 'auth' | 'resolver' | 'config'>): void {
  deps.metrics.setTenantLabels(deps.config.METRICS_TENANT_LABELS);
  deps.metrics.setSources({
    lookups: () => ({ apiKeys: deps.auth.stats(), adapterVersions: deps.resolver.stats() }),
    queue: () => {
      const s = deps.engine.stats().batcher;
      return { queueDepth: s.queueDepth, queueDepthByTenant: s.queueDepthByTenant, inFlight: s.inFlight };
    },
    cache: () => deps.engine.stats().adapterCache,
    executors: () => deps.engine.stats().executors,
    jobs: () => JobQueue.of(deps).countByStatus(TRAIN_JOB_KIND),
  });
}

export function buildApp(deps: AppDeps): OpenAPIHono<AppEnv> {
  const app = newRouter();
  registerSecuritySchemes(app);
  app.use('*', requestContext(deps));

  let doc: OpenApiDocument | undefined;
  const document = () => (doc ??= buildOpenApiDocument(app, VERSION));

  app.route('/', healthRouter());
  app.route('/', docsRouter(document));
  app.route('/', tenantsRouter());
  app.route('/', keysRouter());
  app.route('/', datasetsRouter());
  app.route('/', adaptersRouter());
  app.route('/', jobsRouter());
  app.route('/', classifyRouter());
  app.route('/', consoleRouter());

  app.notFound((c) =>
    errorResponse(c, new AppError('not_found', `no route for ${c.req.method} ${c.req.path}`), c.get('requestId') ?? 'none', c.get('log') ?? deps.log),
  );
  app.onError((err, c) =>
    errorResponse(c, err, c.get('requestId') ?? 'none', c.get('log') ?? deps.log, (code) => deps.metrics.countRejection(code, c.get('tenantId'))),
  );
  return app;
}
