/**
 * A benchmark's HTTP client in a process of its own, so the client's work (fetch, body
 * serialisation, answer parsing) does not run on the server's event loop and count as server
 * latency. The parent sends one request description at a time; the child times the round trip
 * with keep-alive and replies with the wall-clock time and the parsed answer.
 *
 * Start it with `startHttpClient()`; each `request()` is one round trip, one at a time.
 */
import { fork, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';

interface Ask {
  id: number;
  url: string;
  method: string;
  headers: Record<string, string>;
  body: string;
}

interface Reply {
  id: number;
  ms?: number;
  status?: number;
  answer?: unknown;
  error?: string;
}

export interface HttpClient {
  /** One request; resolves with the client-side round-trip time and the parsed JSON answer. */
  request(ask: Omit<Ask, 'id'>): Promise<{ ms: number; status: number; answer: unknown }>;
  close(): Promise<void>;
}

/**
 * `fetch`: Node's fetch (undici) with keep-alive, what a Node caller would write. `socket`: one
 * kept-alive TCP connection, the request written as prepared bytes and the answer read by its
 * Content-Length, as load generators (wrk, autocannon) do, so the round trip holds the server's
 * work and the network stack and next to nothing of a client library's.
 */
export type ClientKind = 'fetch' | 'socket';

export async function startHttpClient(kind: ClientKind = 'fetch'): Promise<HttpClient> {
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), ['--serve', kind], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  await new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.once('message', () => resolve());
  });
  let next = 0;
  const waiting = new Map<number, { resolve: (r: Reply) => void }>();
  child.on('message', (m: Reply) => waiting.get(m.id)?.resolve(m));
  return {
    async request(ask) {
      const id = ++next;
      const reply = await new Promise<Reply>((resolve) => {
        waiting.set(id, { resolve });
        child.send({ ...ask, id });
      });
      waiting.delete(id);
      if (reply.error !== undefined) throw new Error(reply.error);
      return { ms: reply.ms!, status: reply.status!, answer: reply.answer };
    },
    async close() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill();
      await exited;
    },
  };
}

async function viaFetch(ask: Ask): Promise<{ ms: number; status: number; text: string }> {
  const t0 = performance.now();
  const res = await fetch(ask.url, { method: ask.method, headers: ask.headers, body: ask.method === 'GET' ? undefined : ask.body });
  const text = await res.text();
  return { ms: performance.now() - t0, status: res.status, text };
}

const sockets = new Map<string, Promise<net.Socket>>();

function socketFor(url: URL): Promise<net.Socket> {
  const key = url.host;
  let s = sockets.get(key);
  if (s === undefined) {
    s = new Promise<net.Socket>((resolve, reject) => {
      const sock = net.connect(Number(url.port), url.hostname, () => resolve(sock));
      sock.setNoDelay(true);
      sock.once('error', reject);
      sock.once('close', () => sockets.delete(key));
    });
    sockets.set(key, s);
  }
  return s;
}

/** The request as the bytes a load generator would have ready before its clock starts. */
function requestBytes(ask: Ask, url: URL): Buffer {
  const body = ask.method === 'GET' ? Buffer.alloc(0) : Buffer.from(ask.body);
  const head = [`${ask.method} ${url.pathname}${url.search} HTTP/1.1`, `host: ${url.host}`, 'connection: keep-alive'];
  for (const [k, v] of Object.entries(ask.headers)) head.push(`${k}: ${v}`);
  if (ask.method !== 'GET') head.push(`content-length: ${body.length}`);
  return Buffer.concat([Buffer.from(head.join('\r\n') + '\r\n\r\n'), body]);
}

async function viaSocket(ask: Ask): Promise<{ ms: number; status: number; text: string }> {
  const url = new URL(ask.url);
  const sock = await socketFor(url);
  const bytes = requestBytes(ask, url);
  return new Promise((resolve, reject) => {
    let acc: Buffer = Buffer.alloc(0);
    let t0 = 0;
    const fail = (err: Error) => {
      sock.off('data', onData);
      reject(err);
    };
    const onData = (chunk: Buffer) => {
      acc = acc.length === 0 ? chunk : Buffer.concat([acc, chunk]);
      const end = acc.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = acc.subarray(0, end).toString('latin1');
      const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
      if (length === null) return fail(new Error(`answer without content-length: ${head}`));
      if (acc.length < end + 4 + Number(length[1])) return;
      const ms = performance.now() - t0;
      sock.off('data', onData);
      sock.off('error', fail);
      resolve({ ms, status: Number(head.slice(9, 12)), text: acc.subarray(end + 4, end + 4 + Number(length[1])).toString('utf8') });
    };
    sock.on('data', onData);
    sock.once('error', fail);
    t0 = performance.now();
    sock.write(bytes);
  });
}

async function serve(kind: ClientKind): Promise<void> {
  const send = kind === 'socket' ? viaSocket : viaFetch;
  process.on('message', (ask: Ask) => {
    void (async () => {
      try {
        const { ms, status, text } = await send(ask);
        process.send!({ id: ask.id, ms, status, answer: text ? JSON.parse(text) : undefined } satisfies Reply);
      } catch (err) {
        process.send!({ id: ask.id, error: String(err) } satisfies Reply);
      }
    })();
  });
  process.send!({ ready: true });
}

const serveAt = process.argv.indexOf('--serve');
if (serveAt >= 0) void serve(process.argv[serveAt + 1] === 'socket' ? 'socket' : 'fetch');
