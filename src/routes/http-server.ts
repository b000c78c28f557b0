/**
 * The Node HTTP server in front of the app, with the time limits a public listener needs (Node's
 * defaults let a stalled upload hold its connection for 300 s):
 *
 * - HTTP_HEADERS_TIMEOUT_MS: the request's headers must arrive within it;
 * - HTTP_REQUEST_TIMEOUT_MS: the whole request, body included (bounds the slowest upload);
 * - HTTP_BODY_IDLE_TIMEOUT_MS: while the server waits for more of a body, no pause may be longer
 *   (slow-loris uploads that trickle a byte now and then are bounded by the request timeout);
 * - HTTP_KEEP_ALIVE_TIMEOUT_MS: how long an idle kept-alive connection waits for its next request.
 *   With Node's 5 s default, a client that polls every few seconds and does not honour the
 *   `Keep-Alive: timeout=` hint (many pools do not; load balancers keep 60 s) reuses a connection
 *   just as the server closes it and gets ECONNRESET. 65 s outlasts such clients' polls and the
 *   60 s idle timeout common in load balancers; idle connections cost a socket each, no thread.
 *   The headers timeout needs no matching: Node counts it from a request's first byte, not from
 *   the end of the previous one, so an idle connection is cut by this timeout alone.
 *
 * Each answers 408 and closes the connection, as Node does for its own two.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createAdaptorServer } from '@hono/node-server';
import type { Config } from '../config.js';

export type HttpServerConfig = Pick<
  Config,
  'HOST' | 'HTTP_HEADERS_TIMEOUT_MS' | 'HTTP_REQUEST_TIMEOUT_MS' | 'HTTP_BODY_IDLE_TIMEOUT_MS' | 'HTTP_KEEP_ALIVE_TIMEOUT_MS'
>;

type FetchApp = { fetch: (request: Request, env: never) => Response | Promise<Response> };

const IDLE_ANSWER = 'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n';

/** The server for `app`, not yet listening. */
export function createHttpServer(app: FetchApp, config: HttpServerConfig): Server {
  const requestTimeout = config.HTTP_REQUEST_TIMEOUT_MS;
  // Node refuses a headers timeout longer than the request timeout.
  const headersTimeout = requestTimeout > 0 ? Math.min(config.HTTP_HEADERS_TIMEOUT_MS, requestTimeout) : config.HTTP_HEADERS_TIMEOUT_MS;
  const server = createAdaptorServer({
    fetch: app.fetch as never,
    hostname: config.HOST,
    autoCleanupIncoming: true,
    serverOptions: {
      headersTimeout,
      requestTimeout,
      // Node checks both only this often (30 s by default): a fraction of the shorter one.
      connectionsCheckingInterval: Math.max(50, Math.min(30_000, Math.floor(Math.min(headersTimeout, requestTimeout || headersTimeout) / 4))),
    },
  }) as Server;
  server.keepAliveTimeout = config.HTTP_KEEP_ALIVE_TIMEOUT_MS;
  const idleMs = config.HTTP_BODY_IDLE_TIMEOUT_MS;
  if (idleMs > 0) server.on('request', (req: IncomingMessage, res: ServerResponse) => guardBodyIdle(req, res, idleMs));
  return server;
}

/**
 * Cuts a request whose body stops arriving while the server waits for it: the socket's byte count
 * (which includes what Node's parser reads for itself) is sampled a few times per period. Time the
 * request spends unread (its consumer busy, or not reading it at all) does not count: a slow
 * server is not a stalled client. Stops once the body is complete, so a long response (a data set
 * being processed, a queued classify) is never cut by it.
 */
function guardBodyIdle(req: IncomingMessage, res: ServerResponse, idleMs: number): void {
  if (req.complete) return;
  const socket = req.socket;
  let seen = socket.bytesRead;
  let since = Date.now();
  const stop = () => {
    clearInterval(timer);
    req.off('end', stop);
    req.off('close', stop);
  };
  const timer = setInterval(() => {
    if (req.complete || socket.destroyed) return stop();
    const now = Date.now();
    const waiting = req.readableFlowing === true && req.readableLength === 0;
    if (socket.bytesRead !== seen || !waiting) {
      seen = socket.bytesRead;
      since = now;
      return;
    }
    if (now - since < idleMs) return;
    stop();
    if (socket.writable && !res.headersSent) socket.write(IDLE_ANSWER);
    socket.destroy();
  }, Math.max(10, Math.floor(idleMs / 4)));
  timer.unref();
  req.once('end', stop);
  req.once('close', stop);
}
