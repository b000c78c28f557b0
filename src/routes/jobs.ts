/** Training jobs ('train' scope): list, get, cancel, and progress as Server-Sent Events. */
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from '@hono/zod-openapi';
import { streamSSE } from 'hono/streaming';
import { AppError } from '../errors.js';
import { cancelJob, getJob, listJobEvents, listJobs, listWebhookDeliveries } from '../services/training.js';
import { auth, defineRoute, errorResponses, newRouter } from './define.js';
import { keyOf, readPage } from './pagination.js';
import { errorBody, toAppError } from './errors.js';
import { JobListSchema, JobSchema, PageQuery, idParam, isoOf, jobDto } from './schemas.js';

const JobParams = z.object({ jobId: idParam('jobId', 'Job id') });
const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);
/** How often an open stream looks for new events; events are rows, so this is a cheap indexed read. */
const POLL_MS = 300;
/** A comment line this often keeps proxies from closing an idle stream. */
const KEEPALIVE_MS = 15_000;

export const listJobsRoute = defineRoute(auth.tenant('train'), {
  operationId: 'listJobs',
  method: 'get',
  path: '/v1/jobs',
  tags: ['jobs'],
  summary: 'List training jobs (newest first)',
  request: { query: PageQuery },
  responses: { 200: { description: 'Jobs', content: { 'application/json': { schema: JobListSchema } } }, ...errorResponses(400) },
});

export const getJobRoute = defineRoute(auth.tenant('train'), {
  operationId: 'getJob',
  method: 'get',
  path: '/v1/jobs/{jobId}',
  tags: ['jobs'],
  summary: 'Get a job with its latest progress and result',
  request: { params: JobParams },
  responses: { 200: { description: 'The job', content: { 'application/json': { schema: JobSchema } } }, ...errorResponses(404) },
});

export const cancelJobRoute = defineRoute(auth.tenant('train'), {
  operationId: 'cancelJob',
  method: 'post',
  path: '/v1/jobs/{jobId}/cancel',
  tags: ['jobs'],
  summary: 'Cancel a job (queued: at once; running: stops at the next batch, publishes nothing)',
  request: { params: JobParams },
  responses: { 200: { description: 'The job after the request', content: { 'application/json': { schema: JobSchema } } }, ...errorResponses(404, 409) },
});

const DeliverySchema = z
  .object({
    id: z.string(),
    status: z.enum(['queued', 'running', 'succeeded', 'failed', 'cancelled']).openapi({ description: 'queued/running: still trying · succeeded: delivered · failed: gave up' }),
    attempts: z.number().int(),
    maxAttempts: z.number().int(),
    url: z.string(),
    log: z.array(
      z.object({ at: z.string(), attempt: z.number().int(), status: z.number().int().nullable(), error: z.string().nullable(), ms: z.number() }),
    ),
  })
  .openapi('WebhookDelivery');

export const webhookDeliveriesRoute = defineRoute(auth.tenant('train'), {
  operationId: 'listWebhookDeliveries',
  method: 'get',
  path: '/v1/jobs/{jobId}/webhook-deliveries',
  tags: ['jobs'],
  summary: "The job's webhook deliveries and every attempt (empty without a webhook, or before the job ended)",
  request: { params: JobParams },
  responses: {
    200: { description: 'Deliveries', content: { 'application/json': { schema: z.object({ items: z.array(DeliverySchema) }).openapi('WebhookDeliveryList') } } },
    ...errorResponses(404),
  },
});

export const jobEventsRoute = defineRoute(auth.tenant('train'), {
  operationId: 'streamJobEvents',
  method: 'get',
  path: '/v1/jobs/{jobId}/events',
  tags: ['jobs'],
  summary: 'Stream the job’s events (Server-Sent Events) until it ends',
  description:
    'Each event: `event` = type (status, started, progress, published, …), `id` = event id, `data` = JSON {id, at, type, data}. ' +
    'Resume with the Last-Event-ID header or `after`. After the final status a last `end` event carries the job; then the stream closes.',
  request: {
    params: JobParams,
    query: z.object({ after: z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional().openapi({ description: 'Only events after this id.' }) }),
  },
  responses: {
    200: { description: 'An event stream', content: { 'text/event-stream': { schema: { type: 'string' } } } },
    ...errorResponses(400, 404),
  },
});

export function jobsRouter() {
  const app = newRouter();
  app.openapi(listJobsRoute, async (c) => {
    const [deps, ctx] = [c.get('deps'), c.get('principal')];
    return c.json(await readPage(c, c.req.valid('query'), (page) => listJobs({ deps, ctx, page }), keyOf, jobDto), 200);
  });
  app.openapi(getJobRoute, async (c) => c.json(jobDto(await getJob({ deps: c.get('deps'), ctx: c.get('principal'), id: c.req.valid('param').jobId })), 200));
  app.openapi(webhookDeliveriesRoute, async (c) => {
    const items = await listWebhookDeliveries({ deps: c.get('deps'), ctx: c.get('principal'), id: c.req.valid('param').jobId });
    return c.json({ items: items.map((d) => ({ ...d, log: d.log.map((l) => ({ ...l, at: isoOf(l.at) })) })) }, 200);
  });
  app.openapi(cancelJobRoute, async (c) => c.json(jobDto(await cancelJob({ deps: c.get('deps'), ctx: c.get('principal'), id: c.req.valid('param').jobId })), 200));

  app.openapi(jobEventsRoute, async (c) => {
    const deps = c.get('deps');
    const ctx = c.get('principal');
    const log = c.get('log');
    const { jobId } = c.req.valid('param');
    const lastEventId = c.req.header('last-event-id');
    let after = c.req.valid('query').after ?? 0;
    if (lastEventId !== undefined) {
      if (!/^\d{1,15}$/.test(lastEventId)) throw new AppError('validation_failed', 'Last-Event-ID must be an event id');
      after = Number(lastEventId);
    }
    // Before any byte is sent, so a foreign or missing job is an ordinary JSON 404.
    await getJob({ deps, ctx, id: jobId });
    return streamSSE(
      c,
      async (stream) => {
        const stop = new AbortController();
        stream.onAbort(() => stop.abort());
        const onShutdown = () => stop.abort();
        deps.lifecycle.signal.addEventListener('abort', onShutdown, { once: true });
        let lastWrite = Date.now();
        try {
          while (!stop.signal.aborted) {
            const events = await listJobEvents({ deps, ctx, id: jobId, afterId: after, limit: 500 });
            let ended = false;
            for (const e of events) {
              await stream.writeSSE({ event: e.type, id: String(e.id), data: JSON.stringify({ id: e.id, at: isoOf(e.at), type: e.type, data: e.data }) });
              after = e.id;
              const status = (e.data as { status?: unknown } | null)?.status;
              if (e.type === 'status' && typeof status === 'string' && TERMINAL.has(status)) ended = true;
            }
            if (events.length > 0) lastWrite = Date.now();
            // Also ends a stream resumed after the final event (nothing new will ever come).
            if (!ended && events.length === 0) ended = TERMINAL.has((await getJob({ deps, ctx, id: jobId })).status);
            if (ended) {
              const job = await getJob({ deps, ctx, id: jobId });
              await stream.writeSSE({ event: 'end', data: JSON.stringify(jobDto(job)) });
              return;
            }
            if (Date.now() - lastWrite >= KEEPALIVE_MS) {
              await stream.write(': keepalive\n\n');
              lastWrite = Date.now();
            }
            await sleep(POLL_MS, undefined, { signal: stop.signal }).catch(() => {});
          }
        } finally {
          deps.lifecycle.signal.removeEventListener('abort', onShutdown);
        }
      },
      async (err, stream) => {
        // Headers are gone already: report in-band, log with the request id, close.
        // The same mapping as any other answer: a database outage mid-stream is 'unavailable', not 'internal'.
        const { body } = errorBody(toAppError(err), c.get('requestId'));
        log.error({ err, code: body.error.code }, 'job event stream failed');
        await stream.writeSSE({ event: 'error', data: JSON.stringify(body) });
      },
    );
  });
  return app;
}
