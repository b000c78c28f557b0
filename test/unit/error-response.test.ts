/**
 * Every 503 carries Retry-After, also when the code that threw did not say how long (an S3
 * outage's storage_error did not: found by the chaos suite's S3 case); 4xx bodies keep their
 * message, 5xx bodies get the fixed public one.
 */
import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { AppError, ERROR_CODES, type ErrorCode } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { errorResponse } from '../../src/routes/errors.js';

function appThrowing(err: unknown) {
  const app = new Hono();
  app.get('/', () => {
    throw err;
  });
  app.onError((e, c) => errorResponse(c, e, 'req-1', createLogger('silent')));
  return app;
}

describe('error responses', () => {
  const unavailable = (Object.keys(ERROR_CODES) as ErrorCode[]).filter((c) => ERROR_CODES[c] === 503);

  it.each(unavailable)('%s → 503 with Retry-After even when the thrower gave none', async (code) => {
    const r = await appThrowing(new AppError(code, 'S3 put to http://10.0.0.5:9000/bucket/tenants/x failed')).request('/');
    expect(r.status).toBe(503);
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    const body = (await r.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe(code);
    expect(body.error.message).not.toContain('10.0.0.5');
  });

  it("keeps the thrower's own Retry-After", async () => {
    const r = await appThrowing(new AppError('storage_error', 'x', { retryAfterSeconds: 30 })).request('/');
    expect(r.headers.get('retry-after')).toBe('30');
  });

  it('a 4xx keeps its message and has no Retry-After unless given', async () => {
    const r = await appThrowing(new AppError('validation_failed', 'name: too long')).request('/');
    expect(r.status).toBe(400);
    expect(r.headers.get('retry-after')).toBeNull();
    expect(((await r.json()) as { error: { message: string } }).error.message).toBe('name: too long');
  });
});
