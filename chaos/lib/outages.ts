/**
 * Faults the suite injects into the service's own dependencies, never into shared ones:
 * - its own PostgreSQL database (made on the DATABASE_URL server, dropped at the end) stops taking
 *   connections and has its sessions ended, then takes them again;
 * - its own S3 server (s3rver in a child process, on a fixed port, with its files kept) is killed
 *   and started again on the same port and folder.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';

export interface OwnDatabase {
  url: string;
  block(): Promise<void>;
  unblock(): Promise<void>;
  drop(): Promise<void>;
}

export async function createOwnDatabase(baseUrl: string): Promise<OwnDatabase> {
  const name = `dtl_chaos_${Math.floor(Date.now() / 1000)}_${randomBytes(3).toString('hex')}`;
  const admin = postgres(baseUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database "${name}"`);
  const url = new URL(baseUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async block() {
      await admin.unsafe(`alter database "${name}" allow_connections false`);
      await admin.unsafe(`select pg_terminate_backend(pid) from pg_stat_activity where datname = '${name}' and pid <> pg_backend_pid()`);
    },
    async unblock() {
      await admin.unsafe(`alter database "${name}" allow_connections true`);
    },
    async drop() {
      await admin.unsafe(`drop database if exists "${name}" with (force)`).catch(() => {});
      await admin.end({ timeout: 5 });
    },
  };
}

export interface OwnS3 {
  endpoint: string;
  bucket: string;
  env: Record<string, string>;
  kill(): Promise<void>;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

const SELF = fileURLToPath(import.meta.url);

async function launch(port: number, dir: string, bucket: string): Promise<{ child: ChildProcess; port: number }> {
  const child = fork(SELF, ['--s3rver', String(port), dir, bucket], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, NODE_OPTIONS: '--openssl-legacy-provider' } });
  const got = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`s3rver exited with ${code}`)));
    child.once('message', (m: { port: number }) => resolve(m.port));
  });
  child.removeAllListeners('exit');
  return { child, port: got };
}

export async function startOwnS3(): Promise<OwnS3> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'dtl-chaos-s3-'));
  const bucket = `chaos-${randomBytes(3).toString('hex')}`;
  let cur = await launch(0, dir, bucket);
  const port = cur.port;
  const gone = (c: ChildProcess) => new Promise<void>((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('exit', () => r())));
  return {
    endpoint: `http://127.0.0.1:${port}`,
    bucket,
    env: { S3_BUCKET: bucket, S3_ENDPOINT: `http://127.0.0.1:${port}`, S3_FORCE_PATH_STYLE: 'true', AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' },
    async kill() {
      cur.child.kill('SIGKILL');
      await gone(cur.child);
    },
    async restart() {
      cur = await launch(port, dir, bucket);
    },
    async stop() {
      cur.child.kill('SIGKILL');
      await gone(cur.child);
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

async function serveS3rver(port: number, dir: string, bucket: string): Promise<void> {
  const { createRequire } = await import('node:module');
  const S3rver = createRequire(import.meta.url)('s3rver') as new (o: Record<string, unknown>) => { run(): Promise<{ port: number }> };
  const server = new S3rver({ address: '127.0.0.1', port, silent: true, directory: dir, resetOnClose: false, configureBuckets: [{ name: bucket, configs: [] }] });
  const addr = await server.run();
  process.send!({ port: addr.port });
}

if (process.argv[2] === '--s3rver') void serveS3rver(Number(process.argv[3]), process.argv[4], process.argv[5]);
