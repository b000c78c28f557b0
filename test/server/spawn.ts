/**
 * Runs src/server.ts as its own process, the way `npm start` does (`node --import tsx`), and
 * finds its URL in its JSON log. For start-up and shutdown tests.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const SERVER = fileURLToPath(new URL('../../src/server.ts', import.meta.url));
/** tsx resolved here, so the server can run from any working directory. */
export const TSX = import.meta.resolve('tsx');

export interface Spawned {
  proc: ChildProcess;
  /** Everything written so far. */
  stdout(): string;
  stderr(): string;
  /** JSON log lines so far. */
  logs(): Array<Record<string, unknown>>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves with the URL once the server logs 'listening'; rejects if it exits first. */
  ready: Promise<string>;
}

export function spawnServer(env: Record<string, string>, opts: { cwd?: string; inheritConfig?: boolean } = {}): Spawned {
  // Only what a process needs to run, plus the test's settings: no stray config from the caller.
  const base: Record<string, string> = {};
  for (const k of ['PATH', 'HOME', 'TMPDIR', 'NODE_OPTIONS', 'LANG']) if (process.env[k] !== undefined) base[k] = process.env[k]!;
  const proc = spawn(process.execPath, ['--import', TSX, SERVER], {
    cwd: opts.cwd ?? ROOT,
    env: { ...base, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const logs = () =>
    out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => {
        try {
          return JSON.parse(l) as Record<string, unknown>;
        } catch {
          return {};
        }
      });
  const ready = new Promise<string>((resolve, reject) => {
    const timer = setInterval(() => {
      const line = logs().find((l) => l.msg === 'listening');
      if (line !== undefined) {
        clearInterval(timer);
        resolve(String(line.url));
      }
    }, 50);
    void exited.then(({ code, signal }) => {
      clearInterval(timer);
      reject(new Error(`server exited (${code ?? signal}) before listening:\n${err}\n${out.slice(-2000)}`));
    });
  });
  ready.catch(() => {});
  return { proc, stdout: () => out, stderr: () => err, logs, exited, ready };
}
