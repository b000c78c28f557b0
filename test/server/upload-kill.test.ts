/**
 * Issue 11, item 11: a server process killed with SIGKILL in the middle of a data set upload. The
 * data set said 'processing' while the upload went on (its lease renewed past the lease length);
 * once the process is gone, the next server on the same data dir (PGlite reopened, the dead
 * process's lock taken over) shows it 'failed' as soon as the lease has lapsed — not an hour later
 * when the sweep runs.
 */
import http from 'node:http';
import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INTERRUPTED } from '../../src/db/repos/datasets.js';
import { makeShapesDataset, zipClassFolders } from '../helpers/datasets.js';
import { makeTempDir } from '../helpers/db.js';
import { ADMIN_TOKEN, FIXTURE_BACKBONE } from '../routes/harness.js';
import { spawnServer, type Spawned } from './spawn.js';

const LEASE_MS = 2000;
let dir: string;
const servers: Spawned[] = [];

beforeAll(async () => {
  dir = await makeTempDir('dtl-upload-kill');
});
afterAll(async () => {
  for (const s of servers) if (s.proc.exitCode === null && s.proc.signalCode === null) s.proc.kill('SIGKILL');
  await rm(dir, { recursive: true, force: true });
});

const start = () => {
  const s = spawnServer({
    DATA_DIR: dir,
    BACKBONE: FIXTURE_BACKBONE,
    PORT: '0',
    HOST: '127.0.0.1',
    ADMIN_TOKEN,
    TFJS_BACKEND: 'wasm',
    LOG_LEVEL: 'info',
    WORKER_ENABLED: 'false',
    DATASET_LEASE_MS: String(LEASE_MS),
  });
  servers.push(s);
  return s;
};

async function json(url: string, init: { method?: string; token?: string; json?: unknown } = {}) {
  const headers: Record<string, string> = {};
  if (init.token) headers.authorization = `Bearer ${init.token}`;
  if (init.json !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(url, { method: init.method, headers, body: init.json === undefined ? undefined : JSON.stringify(init.json) });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('a server killed mid-upload', () => {
  it("the data set reads 'failed' once its lease has lapsed, on the reopened PGlite data dir", async () => {
    const first = start();
    const url = await first.ready;
    const tenant = await json(`${url}/v1/tenants`, { method: 'POST', token: ADMIN_TOKEN, json: { name: 'kill' } });
    const key = await json(`${url}/v1/tenants/${tenant.body.id}/keys`, { method: 'POST', token: ADMIN_TOKEN, json: { scopes: ['train'] } });
    const token: string = key.body.token;
    const list = async (base: string) => (await json(`${base}/v1/datasets`, { token })).body.items as Array<{ id: string; status: string; error: string | null }>;

    // Half a zip, then the client goes quiet: the request is in progress until the kill.
    const zip = await zipClassFolders(await makeShapesDataset({ classes: 2, perClass: 4, size: 32, seed: 9 }));
    const req = http.request(`${url}/v1/datasets?name=interrupted`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/zip', 'transfer-encoding': 'chunked' },
    });
    req.on('error', () => {}); // the server dies under it
    req.write(zip.subarray(0, zip.length >> 1));

    let items = await list(url);
    for (let i = 0; items.length === 0; i++) {
      expect(i).toBeLessThan(200);
      await sleep(25);
      items = await list(url);
    }
    const id = items[0].id;
    expect(items[0]).toMatchObject({ status: 'processing', error: null });
    // Alive, it renews its lease: well past the lease length it is still processing.
    await sleep(LEASE_MS * 2.5);
    expect((await list(url))[0]).toMatchObject({ id, status: 'processing' });

    first.proc.kill('SIGKILL');
    expect(await first.exited).toEqual({ code: null, signal: 'SIGKILL' });
    const killedAt = Date.now();
    req.destroy();

    const second = start();
    const url2 = await second.ready;
    // The lease was renewed at most a lease ago: from killedAt + LEASE_MS on, every read says failed.
    const wait = killedAt + LEASE_MS + 250 - Date.now();
    if (wait > 0) await sleep(wait);
    const got = await json(`${url2}/v1/datasets/${id}`, { token });
    expect(got.status).toBe(200);
    expect(got.body).toMatchObject({ id, status: 'failed', error: INTERRUPTED, byteSize: 0 });
    expect(await list(url2)).toEqual([expect.objectContaining({ id, status: 'failed', error: 'processing was interrupted; upload again' })]);
    console.log(`upload-kill: failed read ${Date.now() - killedAt} ms after SIGKILL (lease ${LEASE_MS} ms; includes the restart)`);
    // The warning reaches the child's stdout, then this process, on their own time (a loaded machine: seconds).
    const warned = () => second.logs().some((l) => l.msg === 'data sets interrupted while processing marked failed');
    for (const until = Date.now() + 10_000; !warned() && Date.now() < until; ) await sleep(50);
    expect(warned()).toBe(true);

    second.proc.kill('SIGTERM');
    expect((await second.exited).code).toBe(0);
  });
});
