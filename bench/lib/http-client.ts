/**
 * A benchmark's HTTP client in a process of its own, so the client's work (fetch, body
 * serialisation, answer parsing) does not run on the server's event loop and count as server
 * latency. The parent sends one request description at a time; the child times the round trip
 * with keep-alive and replies with the wall-clock time and the parsed answer.
 *
 * Start it with `startHttpClient()`; each `request()` is one round trip, one at a time.
 */
import { fork, type ChildProcess } from 'node:child_process';
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

export async function startHttpClient(): Promise<HttpClient> {
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), ['--serve'], {
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

async function serve(): Promise<void> {
  process.on('message', (ask: Ask) => {
    void (async () => {
      try {
        const t0 = performance.now();
        const res = await fetch(ask.url, { method: ask.method, headers: ask.headers, body: ask.method === 'GET' ? undefined : ask.body });
        const text = await res.text();
        const ms = performance.now() - t0;
        process.send!({ id: ask.id, ms, status: res.status, answer: text ? JSON.parse(text) : undefined } satisfies Reply);
      } catch (err) {
        process.send!({ id: ask.id, error: String(err) } satisfies Reply);
      }
    })();
  });
  process.send!({ ready: true });
}

if (process.argv.includes('--serve')) void serve();
