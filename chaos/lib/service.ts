/**
 * The service under test, as `npm start` runs it (src/server.ts in its own process, found by its
 * 'listening' log line), with what the suite needs around it: RSS samples from /proc, kill -9 and
 * restart on the same data directory, and a record of every exit the suite did not ask for.
 */
import { appendFileSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { spawnServer, type Spawned } from '../../test/server/spawn.js';

export const ADMIN_TOKEN = 'chaos-admin-token-0123456789';

export interface Service {
  url: string;
  dataDir: string;
  /** The service's stdout and stderr, across restarts; left in place after stop(). */
  logFile: string;
  env: Record<string, string>;
  /** Current process id. */
  pid(): number;
  /** Resident set size now, in MiB (NaN when the process is gone). */
  rssMiB(): number;
  /** Exits the suite did not cause (crashes), with their stderr tail. */
  crashes: string[];
  /** kill -9; resolves once the process is gone. */
  kill9(): Promise<void>;
  /** Start again on the same data directory and settings (a new port); resolves when listening. */
  restart(extraEnv?: Record<string, string>): Promise<void>;
  /** SIGTERM, then remove the data directory. */
  stop(): Promise<void>;
  logs(): Array<Record<string, unknown>>;
}

export function rssMiBOf(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? NaN : Number(m[1]) / 1024;
  } catch {
    return NaN;
  }
}

export async function startService(env: Record<string, string> = {}): Promise<Service> {
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'dtl-chaos-'));
  const base = { DATA_DIR: dataDir, PORT: '0', HOST: '127.0.0.1', ADMIN_TOKEN, LOG_LEVEL: 'info', SWEEP_INTERVAL_MS: '0', ...env };
  let proc: Spawned | undefined;
  let expectingExit = false;
  const crashes: string[] = [];
  const launch = async (extra: Record<string, string>) => {
    expectingExit = false;
    const p = spawnServer({ ...base, ...extra });
    proc = p;
    // The service's own log, kept after the run (beside its data directory) for whoever reads a failure.
    p.proc.stdout!.on('data', (d: string) => appendFileSync(svc.logFile, d));
    p.proc.stderr!.on('data', (d: string) => appendFileSync(svc.logFile, d));
    void p.exited.then(({ code, signal }) => {
      if (!expectingExit && proc === p) crashes.push(`exit ${code ?? signal}: ${p.stderr().slice(-500)}`);
    });
    svc.url = await p.ready;
  };
  const svc: Service = {
    url: '',
    dataDir,
    logFile: `${dataDir}.log`,
    env: base,
    pid: () => proc?.proc.pid ?? -1,
    rssMiB: () => rssMiBOf(proc?.proc.pid ?? -1),
    crashes,
    async kill9() {
      if (proc === undefined || proc.proc.exitCode !== null || proc.proc.signalCode !== null) return;
      expectingExit = true;
      proc.proc.kill('SIGKILL');
      await proc.exited;
    },
    restart: (extra = {}) => launch(extra),
    async stop() {
      if (proc !== undefined && proc.proc.exitCode === null && proc.proc.signalCode === null) {
        expectingExit = true;
        proc.proc.kill('SIGTERM');
        const timer = setTimeout(() => proc?.proc.kill('SIGKILL'), 20_000);
        await proc.exited;
        clearTimeout(timer);
      }
      await fs.rm(dataDir, { recursive: true, force: true });
    },
    logs: () => proc?.logs() ?? [],
  };
  await launch({});
  return svc;
}
