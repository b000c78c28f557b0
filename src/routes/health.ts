/** Liveness, readiness and Prometheus metrics (no /v1 prefix: they are for machines, not clients). */
import { z } from '@hono/zod-openapi';
import { AppError } from '../errors.js';
import { bearerToken, sameToken } from '../services/auth.js';
import { auth, defineRoute, errorResponses, newRouter } from './define.js';

const HealthSchema = z.object({ status: z.literal('ok') }).openapi('Health');
const ReadySchema = z
  .object({
    status: z.enum(['ready', 'not_ready']),
    checks: z.record(z.string(), z.string()).openapi({ description: "Each check: 'ok' or why it failed." }),
    backbone: z.object({ identity: z.string(), width: z.number().int(), depth: z.number().int(), imageSize: z.number().int() }),
  })
  .openapi('Readiness');

export const healthRoute = defineRoute(auth.public, {
  operationId: 'health',
  method: 'get',
  path: '/healthz',
  tags: ['health'],
  summary: 'Liveness: the process answers',
  responses: { 200: { description: 'Alive', content: { 'application/json': { schema: HealthSchema } } } },
});

export const readyRoute = defineRoute(auth.public, {
  operationId: 'ready',
  method: 'get',
  path: '/readyz',
  tags: ['health'],
  summary: 'Readiness: backbone loaded, database and blob store reachable, not shutting down',
  responses: {
    200: { description: 'Ready', content: { 'application/json': { schema: ReadySchema } } },
    503: { description: 'Not ready (shutting down, or a dependency failed)', content: { 'application/json': { schema: ReadySchema } } },
  },
});

export const metricsRoute = defineRoute(auth.public, {
  operationId: 'metrics',
  method: 'get',
  path: '/metrics',
  tags: ['health'],
  summary: 'Prometheus metrics',
  description:
    'With METRICS_TOKEN set, only for `Authorization: Bearer <METRICS_TOKEN>` (otherwise 401 with `WWW-Authenticate: Bearer`). ' +
    'Per-tenant series only with METRICS_TENANT_LABELS.',
  responses: {
    200: { description: 'Prometheus text exposition format', content: { 'text/plain': { schema: z.string() } } },
    ...errorResponses(401),
  },
});

const TIMEOUT_MS = 2000;

async function check(fn: () => Promise<unknown> | unknown): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const r = await Promise.race([
      Promise.resolve().then(fn),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer in ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
      }),
    ]);
    return typeof r === 'string' ? r : 'ok';
  } catch (err) {
    return err instanceof Error ? err.message.split('\n')[0].slice(0, 200) : 'failed';
  } finally {
    clearTimeout(timer);
  }
}

export function healthRouter() {
  const app = newRouter();
  app.openapi(healthRoute, (c) => c.json({ status: 'ok' as const }, 200));

  app.openapi(readyRoute, async (c) => {
    const deps = c.get('deps');
    const checks: Record<string, string> = {
      shutdown: deps.lifecycle.shuttingDown ? 'shutting down' : 'ok',
      database: await check(() => deps.database.ping()),
      storage: await check(() => deps.blobs.ping()),
      backbone: 'ok',
    };
    for (const [name, extra] of Object.entries(deps.lifecycle.checks)) {
      checks[name] = await check(async () => (await extra()) ?? 'ok');
    }
    const ok = Object.values(checks).every((v) => v === 'ok');
    const cfg = deps.backbone.config;
    const body = {
      status: ok ? ('ready' as const) : ('not_ready' as const),
      checks,
      backbone: { identity: deps.backbone.identity, width: cfg.width, depth: cfg.depth, imageSize: cfg.imageSize },
    };
    return ok ? c.json(body, 200) : c.json(body, 503);
  });

  app.openapi(metricsRoute, async (c) => {
    const { metrics, config } = c.get('deps');
    if (config.METRICS_TOKEN !== undefined && !sameToken(config.METRICS_TOKEN, bearerToken(c.req.header('authorization')))) {
      throw new AppError('unauthenticated', 'missing or invalid metrics token');
    }
    return c.text(await metrics.render(), 200, { 'content-type': metrics.contentType });
  });
  return app;
}
