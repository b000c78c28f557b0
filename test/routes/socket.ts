/**
 * Route tests over a real socket, for what `app.request()` cannot show: whether an answer reaches
 * the client at all (a destroyed request stream takes the socket with it), connection headers,
 * and server timeouts.
 */
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { createHttpServer, type HttpServerConfig } from '../../src/routes/http-server.js';
import type { Harness } from './harness.js';

export interface Served {
  port: number;
  server: http.Server;
  close(): Promise<void>;
}

/** The harness's app behind the server start-up's own HTTP server (its timeouts overridable), on a free port. */
export async function listen(h: Harness, overrides: Partial<HttpServerConfig> = {}): Promise<Served> {
  const server = createHttpServer(h.app, { ...h.config, ...overrides, HOST: '127.0.0.1' });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface SocketReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

/**
 * One request on its own connection. The body is written as fast as the socket takes it; an answer
 * that arrives before the whole body was sent still counts (the server may refuse early), but a
 * connection closed without an answer rejects, as curl's "Empty reply from server" would.
 */
export function send(
  port: number,
  method: string,
  path: string,
  opts: { headers?: Record<string, string>; body?: Buffer; token?: string } = {},
): Promise<SocketReply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
    const req = http.request({ host: '127.0.0.1', port, method, path, headers, agent: false });
    let answered = false;
    req.on('response', (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown;
        try {
          body = text === '' ? undefined : JSON.parse(text);
        } catch {
          body = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, body });
      });
    });
    req.on('error', (err) => {
      // Writing the rest of a refused body may fail once the server closed; the answer stands.
      if (!answered) reject(err);
    });
    req.end(opts.body);
  });
}

export type Part = { name: string; value: string } | { name: string; filename: string; type?: string; data: Buffer };

/** A multipart/form-data body built by hand, so tests control part order and size exactly. */
export function multipart(parts: Part[]): { body: Buffer; contentType: string } {
  const boundary = `----dtl${Math.random().toString(16).slice(2)}`;
  const chunks: Buffer[] = [];
  for (const p of parts) {
    if ('value' in p) {
      chunks.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${p.name}"\r\n\r\n${p.value}\r\n`));
    } else {
      chunks.push(
        Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${p.name}"; filename="${p.filename}"\r\nContent-Type: ${p.type ?? 'application/octet-stream'}\r\n\r\n`),
        p.data,
        Buffer.from('\r\n'),
      );
    }
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), contentType: `multipart/form-data; boundary=${boundary}` };
}

export interface RawExchange {
  socket: net.Socket;
  /** What the server sent so far. */
  received(): string;
  /** Everything the server sent, once it closed the connection; and when that was. */
  closed: Promise<{ text: string; at: number }>;
}

/**
 * Bytes written as given on a raw socket, for what an HTTP client will not do: stall halfway
 * through the headers or the body. Write more with `socket.write`.
 */
export async function raw(port: number, data: string | Buffer): Promise<RawExchange> {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.on('error', () => {});
  const closed = new Promise<{ text: string; at: number }>((resolve) => {
    socket.once('close', () => resolve({ text: Buffer.concat(chunks).toString('utf8'), at: Date.now() }));
  });
  socket.write(data);
  return { socket, closed, received: () => Buffer.concat(chunks).toString('utf8') };
}

/** Request head of an upload whose body is `length` bytes (the caller sends them, or not). */
export function uploadHead(path: string, token: string, length: number, contentType = 'application/zip'): string {
  return `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\nContent-Type: ${contentType}\r\nContent-Length: ${length}\r\n\r\n`;
}
