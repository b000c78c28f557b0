/**
 * The request body behind @hono/node-server is the IncomingMessage, and destroying that stream
 * (what `pipeline`, a broken `for await` or an unpiped-then-destroyed source do on a failure)
 * destroys its socket: a refusal thrown while the body was being read would never reach the
 * client. So nothing here hands the IncomingMessage to code that may destroy it:
 *
 * - `requestStream` gives a PassThrough fed from it; destroying that only unpipes.
 * - `readBody` reads a small body with listeners it removes when it gives up.
 * - multipart parsing (uploads.ts) unpipes instead of destroying.
 *
 * Once the answer is ready, `settleBody` (in the request middleware) reads and discards what the
 * client is still sending, within HTTP_DISCARD_MAX_BYTES / HTTP_DISCARD_MAX_MS, so the client is
 * not reset mid-upload before it reads the answer; when the body did not end within those bounds
 * the answer carries `Connection: close` and Node closes the connection after it.
 */
import { IncomingMessage } from 'node:http';
import { PassThrough, Readable } from 'node:stream';
import type { ReadableStream as NodeWebReadableStream } from 'node:stream/web';
import type { Context } from 'hono';
import { AppError } from '../errors.js';

/** The IncomingMessage behind the request, when nothing else (hono's own body reader) has started on it. */
export function incomingOf(c: Context): IncomingMessage | undefined {
  const incoming = (c.env as { incoming?: unknown } | undefined)?.incoming;
  if (!(incoming instanceof IncomingMessage) || incoming.readableDidRead) return undefined;
  if (incoming.listenerCount('data') > 0 || incoming.listenerCount('readable') > 0) return undefined;
  return incoming;
}

function webBody(c: Context): Readable {
  const body = c.req.raw.body;
  if (body === null) throw new AppError('bad_request', 'the request has no body');
  return Readable.fromWeb(body as unknown as NodeWebReadableStream<Uint8Array>);
}

const aborted = () => new AppError('bad_request', 'the client closed the connection before the request body ended');

/**
 * The request body as a Node stream its consumer may destroy; 'bad_request' when there is none.
 * Without a socket (`app.request` in tests) it is the web body converted.
 */
export function requestStream(c: Context): Readable {
  const incoming = incomingOf(c);
  if (incoming === undefined) return webBody(c);
  const out = new PassThrough();
  const onError = (err: Error) => out.destroy(err);
  const onClose = () => {
    if (!incoming.complete) out.destroy(aborted());
  };
  incoming.on('error', onError);
  incoming.on('close', onClose);
  out.once('close', () => {
    incoming.off('error', onError);
    incoming.off('close', onClose);
  });
  // pipe() unpipes (and pauses the request) when `out` closes, without destroying the request.
  incoming.pipe(out);
  return out;
}

/**
 * A small body read whole, up to `maxBytes` ('payload_too_large' past it, or at once when
 * Content-Length says so). Reads the IncomingMessage directly with plain listeners: no stream
 * conversion on the classify fast path, and nothing destroyed when it gives up.
 */
export async function readBody(c: Context, maxBytes: number, what: string): Promise<Buffer> {
  const tooLarge = () => new AppError('payload_too_large', `${what} is larger than ${maxBytes} bytes`, { details: { maxBytes } });
  const declared = Number(c.req.header('content-length'));
  if (Number.isFinite(declared) && declared > maxBytes) throw tooLarge();
  const incoming = incomingOf(c);
  if (incoming === undefined) {
    const parts: Buffer[] = [];
    let n = 0;
    for await (const chunk of webBody(c) as AsyncIterable<Uint8Array>) {
      n += chunk.length;
      if (n > maxBytes) throw tooLarge();
      parts.push(Buffer.from(chunk));
    }
    return Buffer.concat(parts, n);
  }
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let n = 0;
    const done = (err?: Error) => {
      incoming.off('data', onData);
      incoming.off('end', onEnd);
      incoming.off('error', onError);
      incoming.off('close', onClose);
      if (err === undefined) {
        resolve(parts.length === 1 ? parts[0] : Buffer.concat(parts, n));
      } else {
        incoming.pause();
        reject(err);
      }
    };
    const onData = (chunk: Buffer) => {
      n += chunk.length;
      if (n > maxBytes) done(tooLarge());
      else parts.push(chunk);
    };
    const onEnd = () => done();
    const onError = (err: Error) => done(new AppError('bad_request', `the request body could not be read: ${err.message}`));
    const onClose = () => {
      if (!incoming.readableEnded) done(aborted());
    };
    incoming.on('data', onData);
    incoming.on('end', onEnd);
    incoming.on('error', onError);
    incoming.on('close', onClose);
  });
}

export interface DiscardLimits {
  maxBytes: number;
  maxMs: number;
}

/**
 * Reads and drops the rest of the body of an answered request, within `limits`. Resolves true
 * when the body ended (the connection can be kept), false when it was given up on.
 */
function discardRest(incoming: IncomingMessage, limits: DiscardLimits): Promise<boolean> {
  if (incoming.complete || incoming.readableEnded) return Promise.resolve(true);
  if (incoming.destroyed) return Promise.resolve(false);
  return new Promise((resolve) => {
    let seen = 0;
    const finish = (ended: boolean) => {
      clearTimeout(timer);
      incoming.off('data', onData);
      incoming.off('end', onEnd);
      incoming.off('error', onError);
      incoming.off('close', onClose);
      if (!ended) incoming.pause();
      resolve(ended);
    };
    const onData = (chunk: Buffer) => {
      seen += chunk.length;
      if (seen > limits.maxBytes) finish(false);
    };
    const onEnd = () => finish(true);
    const onError = () => finish(false);
    const onClose = () => finish(incoming.complete);
    const timer = setTimeout(() => finish(false), limits.maxMs);
    // The answer is decided: whatever stopped reading early lets go (busboy, a stream given up
    // on, hono's web body, which would pause the request again at every chunk).
    incoming.unpipe();
    incoming.removeAllListeners('data');
    incoming.on('data', onData);
    incoming.on('end', onEnd);
    incoming.on('error', onError);
    incoming.on('close', onClose);
    incoming.resume();
  });
}

/**
 * After the answer is built and before it is sent: discard what is left of the body (bounded)
 * and, when it did not end, mark the answer `Connection: close`. A no-op without a socket and
 * for bodies already read to the end (every successful request), so it costs nothing there.
 */
export async function settleBody(c: Context, limits: DiscardLimits): Promise<void> {
  const incoming = (c.env as { incoming?: unknown } | undefined)?.incoming;
  if (!(incoming instanceof IncomingMessage) || incoming.complete) return;
  if (!(await discardRest(incoming, limits))) c.header('connection', 'close');
}
