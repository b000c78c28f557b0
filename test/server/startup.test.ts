/**
 * The composition root as a process: `npm start` defaults (./data is created, the embedded
 * database and disk blob store come up), a clear fast failure when the backbone is missing,
 * and an orderly SIGTERM when idle.
 */
import { cp, mkdir, readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempDir } from '../helpers/db.js';
import { startS3, type TestS3 } from '../helpers/s3.js';
import { FIXTURE_BACKBONE } from '../routes/harness.js';
import { spawnServer } from './spawn.js';

let cwd: string;
beforeAll(async () => {
  cwd = await makeTempDir('dtl-start');
});
afterAll(async () => {
  await rm(cwd, { recursive: true, force: true });
});

describe('server process', () => {
  it('fails fast, with a message naming BACKBONE, when the backbone folder is missing', async () => {
    const s = spawnServer({ PORT: '0', HOST: '127.0.0.1' }, { cwd });
    const { code } = await s.exited;
    expect(code).toBe(1);
    expect(s.stderr()).toMatch(/cannot start: BACKBONE folder '.*backbones\/default' does not exist/);
    expect(s.stderr()).not.toMatch(/\n\s+at /); // a message, not a stack trace
  });

  it('comes up on embedded defaults (./data created) and stops cleanly on SIGTERM', async () => {
    await mkdir(path.join(cwd, 'backbones'), { recursive: true });
    await cp(FIXTURE_BACKBONE, path.join(cwd, 'backbones', 'default'), { recursive: true });
    const s = spawnServer({ PORT: '0', HOST: '127.0.0.1' }, { cwd });
    const url = await s.ready;
    expect((await stat(path.join(cwd, 'data'))).isDirectory()).toBe(true);
    expect(await readdir(path.join(cwd, 'data'))).toEqual(expect.arrayContaining(['pglite', 'blobs']));
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    const ready = await fetch(`${url}/readyz`);
    expect(ready.status).toBe(200);
    expect(((await ready.json()) as { checks: unknown }).checks).toMatchObject({ database: 'ok', storage: 'ok', backbone: 'ok', shutdown: 'ok' });
    // No ADMIN_TOKEN configured: administration is off, and says so.
    const admin = await fetch(`${url}/v1/tenants`, { headers: { authorization: 'Bearer whatever-it-is-1234' } });
    expect(admin.status).toBe(403);
    expect((await fetch(`${url}/docs`)).status).toBe(200);
    s.proc.kill('SIGTERM');
    expect(await s.exited).toEqual({ code: 0, signal: null });
    const msgs = s.logs().map((l) => l.msg);
    expect(msgs).toContain('training worker started');
    expect(msgs).toContain('training worker stopped');
    expect(msgs.at(-1)).toBe('shutdown complete');
    // The embedded database's lock is released: the next start can take it.
    await expect(stat(path.join(cwd, 'data', 'pglite.lock'))).rejects.toThrow();
  });
});

describe('server process with S3 configured but no bucket', () => {
  let s3: TestS3;
  beforeAll(async () => {
    s3 = await startS3();
  });
  afterAll(() => s3.stop());

  it('says so in one log line at start and fails /readyz with the reason', async () => {
    const dataDir = await makeTempDir('dtl-start-s3');
    const s = spawnServer({
      PORT: '0',
      HOST: '127.0.0.1',
      DATA_DIR: dataDir,
      BACKBONE: FIXTURE_BACKBONE,
      S3_BUCKET: 'no-such-bucket',
      S3_ENDPOINT: s3.endpoint,
      AWS_ACCESS_KEY_ID: s3.credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
      WORKER_ENABLED: 'false',
    });
    try {
      const url = await s.ready;
      const lines = s.logs().filter((l) => String(l.msg).startsWith('blob store not usable'));
      expect(lines).toHaveLength(1);
      expect(lines[0].msg).toMatch(/S3 bucket 'no-such-bucket': does not exist \(create it, e\.g\. with infra\/docker\/create-bucket\.mjs\)/);
      expect(lines[0].level).toBe('error');
      const ready = await fetch(`${url}/readyz`);
      expect(ready.status).toBe(503);
      const body = (await ready.json()) as { status: string; checks: Record<string, string> };
      expect(body.status).toBe('not_ready');
      expect(body.checks.storage).toMatch(/no-such-bucket': does not exist/);
      expect(body.checks.database).toBe('ok');
    } finally {
      s.proc.kill('SIGTERM');
      await s.exited;
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
