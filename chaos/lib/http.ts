/**
 * The chaos suite's HTTP client: node:http, so that "no answer at all" (a reset or an empty reply)
 * is told apart from an answer, and every answer is reduced to status, error code and time.
 * Runs in the chaos process; the service under test always runs in a process of its own.
 */
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';

export interface Ask {
  method: string;
  path: string;
  token?: string;
  headers?: Record<string, string>;
  /** A buffer, a string, or a factory for a stream (called once per send). */
  body?: Buffer | string | (() => Readable);
  json?: unknown;
}

export interface Answer {
  /** 0: no HTTP answer (connection refused, reset, empty reply, timeout). */
  status: number;
  code?: string;
  ms: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  /** Body length in bytes, as received. */
  bytes?: number;
  /** Parsed JSON body, when it was JSON. */
  body?: unknown;
  /** Why there was no answer. */
  error?: string;
}

export interface Client {
  base: string;
  send(ask: Ask, opts?: { timeoutMs?: number; fresh?: boolean }): Promise<Answer>;
  close(): void;
}

export function makeClient(base: string, opts: { maxSockets?: number } = {}): Client {
  const agent = new http.Agent({ keepAlive: true, maxSockets: opts.maxSockets ?? 256 });
  return {
    base,
    send: (ask, o = {}) => send(base, ask, { agent: o.fresh === true ? false : agent, timeoutMs: o.timeoutMs }),
    close: () => agent.destroy(),
  };
}

export function send(base: string, ask: Ask, opts: { agent?: http.Agent | false; timeoutMs?: number } = {}): Promise<Answer> {
  const url = new URL(ask.path, base);
  const headers: Record<string, string> = { ...ask.headers };
  if (ask.token !== undefined) headers.authorization = `Bearer ${ask.token}`;
  let payload: Buffer | string | Readable | undefined;
  if (ask.json !== undefined) {
    payload = JSON.stringify(ask.json);
    headers['content-type'] ??= 'application/json';
  } else if (typeof ask.body === 'function') {
    payload = ask.body();
  } else {
    payload = ask.body;
  }
  if (typeof payload === 'string' || Buffer.isBuffer(payload)) headers['content-length'] = String(Buffer.byteLength(payload));
  const t0 = performance.now();
  return new Promise((resolve) => {
    let settled = false;
    const done = (a: Omit<Answer, 'ms'>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ ...a, ms: performance.now() - t0 });
    };
    const req = http.request(url, { method: ask.method, headers, agent: opts.agent ?? false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (err) => done({ status: 0, headers: {}, text: '', error: `response cut: ${err.message}` }));
      res.on('end', () => {
        const raw = Buffer.concat(chunks);
        const text = raw.toString('utf8');
        let body: unknown;
        let code: string | undefined;
        if (/json/.test(String(res.headers['content-type'] ?? ''))) {
          try {
            body = JSON.parse(text);
            code = (body as { error?: { code?: string } }).error?.code;
          } catch {
            /* not JSON after all: the text is kept */
          }
        }
        done({ status: res.statusCode ?? 0, code, headers: res.headers, text, bytes: raw.length, body });
      });
    });
    const timer = setTimeout(() => {
      req.destroy(new Error('timed out'));
      done({ status: 0, headers: {}, text: '', error: 'timed out' });
    }, opts.timeoutMs ?? 30_000);
    // A refusal may arrive while the body is still being sent; the write then fails, which is
    // not the answer's fault: only an error before any response counts as "no answer".
    req.on('error', (err) => setTimeout(() => done({ status: 0, headers: {}, text: '', error: err.message }), 50));
    if (payload === undefined) req.end();
    else if (typeof payload === 'string' || Buffer.isBuffer(payload)) req.end(payload);
    else {
      payload.on('error', (err) => req.destroy(err));
      payload.pipe(req);
    }
  });
}

/** The p-th percentile (0–100) of a list of numbers, nearest rank. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

/** Counts of answers by status ("0" = no answer). */
export function countStatuses(answers: Answer[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const a of answers) out[String(a.status)] = (out[String(a.status)] ?? 0) + 1;
  return out;
}

/** An answer outside {2xx, 4xx, 503} (0 = none at all) breaks the suite's promise. */
export function outsideContract(a: Answer): boolean {
  return !((a.status >= 200 && a.status < 300) || (a.status >= 400 && a.status < 500) || a.status === 503);
}
