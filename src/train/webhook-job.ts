/**
 * The `webhook` job: tells a training job's webhook that the job ended. Queued by the job queue in
 * the transaction that ends the job (db/repos/job-events.ts), run by any worker, retried with the
 * queue's backoff (WEBHOOK_JOB_KIND's 8 attempts ≈ 10 minutes); every attempt is a 'delivery'
 * event on the webhook job — the delivery log (GET /v1/jobs/{id}/webhook-deliveries).
 *
 * Signed as Standard Webhooks (standardwebhooks.com) sign: `webhook-id` (stable across retries),
 * `webhook-timestamp` (Unix seconds), `webhook-signature: v1,<base64 HMAC-SHA256 of
 * "{id}.{timestamp}.{body}" keyed with the secret's UTF-8 bytes>`.
 */
import { createHmac } from 'node:crypto';
import { z } from 'zod';
import { JobQueue, WEBHOOK_JOB_KIND, jobErrorOf } from '../jobs/queue.js';
import type { JobHandler } from '../jobs/worker.js';
import type { Config } from '../config.js';
import type { Database } from '../db/open.js';

export { WEBHOOK_JOB_KIND };

/** What a training request may ask for (routes and services validate with it). */
export const webhookSchema = z
  .object({
    url: z.url({ protocol: /^https?$/ }).max(2048),
    secret: z.string().min(16).max(256),
  })
  .strict();
export type WebhookSpec = z.infer<typeof webhookSchema>;

const payloadSchema = z.object({ jobId: z.string(), webhook: webhookSchema });
/** A receiver that does not answer in this time counts as a failed attempt. */
const DELIVERY_TIMEOUT_MS = 10_000;

export function signWebhook(secret: string, id: string, timestamp: number, body: string): string {
  return `v1,${createHmac('sha256', Buffer.from(secret, 'utf8')).update(`${id}.${timestamp}.${body}`).digest('base64')}`;
}

export function webhookJobHandler(deps: { database: Database; config: Pick<Config, 'JOB_LEASE_MS' | 'JOB_MAX_ATTEMPTS'> }): JobHandler {
  return async (ctx) => {
    const { jobId, webhook } = payloadSchema.parse(ctx.job.payload);
    const ended = await JobQueue.of(deps).get(jobId, ctx.job.tenantId);
    const body = JSON.stringify({
      type: 'job.finished',
      timestamp: new Date().toISOString(),
      data: {
        job: {
          id: ended.id,
          kind: ended.kind,
          status: ended.status,
          result: ended.result ?? null,
          error: jobErrorOf(ended.error),
          createdAt: ended.createdAt.toISOString(),
          finishedAt: ended.finishedAt?.toISOString() ?? null,
        },
      },
    });
    const timestamp = Math.floor(Date.now() / 1000);
    const started = performance.now();
    let status: number | undefined;
    let error: string | undefined;
    try {
      const res = await fetch(webhook.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'dtl-host-webhook',
          'webhook-id': ctx.job.id,
          'webhook-timestamp': String(timestamp),
          'webhook-signature': signWebhook(webhook.secret, ctx.job.id, timestamp, body),
        },
        body,
        // A redirect is an answer (3xx: not delivered), never followed to another host.
        redirect: 'manual',
        signal: AbortSignal.any([ctx.signal, AbortSignal.timeout(DELIVERY_TIMEOUT_MS)]),
      });
      status = res.status;
      await res.body?.cancel();
    } catch (err) {
      error = err instanceof Error ? `${err.name}: ${err.message}`.slice(0, 200) : 'failed';
    }
    const ms = Math.round(performance.now() - started);
    await ctx.event('delivery', { attempt: ctx.attempt, url: webhook.url, status: status ?? null, error: error ?? null, ms });
    ctx.signal.throwIfAborted();
    if (status === undefined || status < 200 || status >= 300) throw new Error(`webhook delivery failed: ${status === undefined ? error : `HTTP ${status}`}`);
    return { status, attempts: ctx.attempt };
  };
}
