/**
 * Connection limits over a real socket (issue 11): header, body-idle and whole-request timeouts
 * cut stalled clients off with 408; a refused body is discarded within bounds and the answer says
 * `Connection: close` when the rest was not read; a tenant may have UPLOADS_PER_TENANT uploads in
 * progress at once, others are unaffected.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeShapesDataset, zipClassFolders } from '../helpers/datasets.js';
import { startHarness, type Harness } from './harness.js';
import { listen, multipart, raw, send, uploadHead, type Served } from './socket.js';

let h: Harness;
let zip: Buffer;
let a: { id: string; token: string };
let b: { id: string; token: string };
const servers: Served[] = [];

beforeAll(async () => {
  h = await startHarness({ env: { UPLOAD_MAX_BYTES: '1000000', UPLOADS_PER_TENANT: '2', HTTP_DISCARD_MAX_MS: '300', RATE_LIMIT_BURST: '1000' } });
  a = await h.tenant('tenant-a');
  b = await h.tenant('tenant-b');
  zip = await zipClassFolders(await makeShapesDataset({ classes: 2, perClass: 3, size: 16, seed: 3 }));
});
afterAll(async () => {
  for (const s of servers) await s.close();
  await h?.close();
});

async function server(overrides: Parameters<typeof listen>[1]): Promise<Served> {
  const s = await listen(h, overrides);
  servers.push(s);
  return s;
}

async function until(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const uploadZip = (port: number, token: string, name: string) =>
  send(port, 'POST', `/v1/datasets?name=${name}`, { token, body: zip, headers: { 'content-type': 'application/zip' } });

describe('timeouts', () => {
  it('answers 408 and closes a stalled upload body after HTTP_BODY_IDLE_TIMEOUT_MS', async () => {
    const s = await server({ HTTP_BODY_IDLE_TIMEOUT_MS: 300 });
    const t0 = Date.now();
    const ex = await raw(s.port, uploadHead('/v1/datasets?name=stalled', a.token, 500_000));
    ex.socket.write(zip.subarray(0, 100));
    const { text, at } = await ex.closed;
    expect(text).toMatch(/^HTTP\/1\.1 408 /);
    expect(at - t0).toBeGreaterThanOrEqual(300);
    expect(at - t0).toBeLessThan(10_000);
    // The slot the stalled upload held is given back.
    await until(() => h.deps.uploads.inUse(a.id) === 0, 'the upload slot');
  });

  it('does not cut a body that keeps arriving, however slowly overall', async () => {
    const s = await server({ HTTP_BODY_IDLE_TIMEOUT_MS: 1000 });
    const ex = await raw(s.port, uploadHead('/v1/datasets?name=trickle', a.token, zip.length));
    // 1.6 s in all, never more than 0.2 s without a byte.
    const pieces = 8;
    const step = Math.ceil(zip.length / pieces);
    for (let i = 0; i < pieces; i++) {
      await new Promise((r) => setTimeout(r, 200));
      ex.socket.write(zip.subarray(i * step, (i + 1) * step));
    }
    await until(() => ex.received().includes('"imageCount"'), 'the answer');
    expect(ex.received()).toMatch(/^HTTP\/1\.1 201 /);
    ex.socket.destroy();
  });

  it('answers 408 to headers that never end (HTTP_HEADERS_TIMEOUT_MS)', async () => {
    const s = await server({ HTTP_HEADERS_TIMEOUT_MS: 1000, HTTP_REQUEST_TIMEOUT_MS: 5000 });
    const t0 = Date.now();
    const ex = await raw(s.port, 'POST /v1/datasets HTTP/1.1\r\nHost: x\r\n');
    const { text, at } = await ex.closed;
    expect(text).toMatch(/^HTTP\/1\.1 408 /);
    expect(at - t0).toBeGreaterThanOrEqual(1000);
    expect(at - t0).toBeLessThan(10_000);
  });
});

describe('refused bodies', () => {
  it('keeps the connection when the rest of a refused body was discarded', async () => {
    const s = await server({});
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const two = multipart([{ name: 'name', value: 'two' }, { name: 'a', filename: 'a.zip', data: zip }, { name: 'b', filename: 'b.zip', data: zip }]);
    const first = await new Promise<{ status: number; connection?: string }>((resolve, reject) => {
      const req = http.request({ port: s.port, host: '127.0.0.1', method: 'POST', path: '/v1/datasets', agent, headers: { authorization: `Bearer ${a.token}`, 'content-type': two.contentType } }, (res) => {
        res.resume().on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection }));
      });
      req.on('error', reject);
      req.end(two.body);
    });
    expect(first).toEqual({ status: 400, connection: 'keep-alive' });
    const second = await new Promise<{ status: number; reused: boolean }>((resolve, reject) => {
      const req = http.request({ port: s.port, host: '127.0.0.1', path: '/v1/me', agent, headers: { authorization: `Bearer ${a.token}` } }, (res) => {
        res.resume().on('end', () => resolve({ status: res.statusCode ?? 0, reused: req.reusedSocket }));
      });
      req.on('error', reject);
      req.end();
    });
    expect(second).toEqual({ status: 200, reused: true });
    agent.destroy();
  });

  it('answers with Connection: close when the rest does not come within HTTP_DISCARD_MAX_MS', async () => {
    const s = await server({});
    // 1.2 MB of a declared 50 MB: refused at UPLOAD_MAX_BYTES, then the client stops sending.
    const ex = await raw(s.port, uploadHead('/v1/datasets?name=big', a.token, 50_000_000));
    ex.socket.write(Buffer.alloc(1_200_000, 1));
    const { text } = await ex.closed;
    expect(text).toMatch(/^HTTP\/1\.1 413 /);
    expect(text).toMatch(/\r\nconnection: close\r\n/i);
    expect(JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)).error.code).toBe('payload_too_large');
  });
});

describe('uploads per tenant', () => {
  it('refuses a third concurrent upload of one tenant with 429, not another tenant’s', async () => {
    const s = await server({ HTTP_BODY_IDLE_TIMEOUT_MS: 0 });
    const stalled = [];
    for (const name of ['held-1', 'held-2']) {
      const ex = await raw(s.port, uploadHead(`/v1/datasets?name=${name}`, a.token, zip.length));
      ex.socket.write(zip.subarray(0, 100));
      stalled.push(ex);
    }
    await until(() => h.deps.uploads.inUse(a.id) === 2, 'two uploads in progress');
    const third = await uploadZip(s.port, a.token, 'third');
    expect([third.status, third.body.error.code]).toEqual([429, 'rate_limited']);
    expect(Number(third.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    const other = await uploadZip(s.port, b.token, 'other');
    expect(other.status, other.text).toBe(201);
    // Clients that go away give their slots back.
    for (const ex of stalled) ex.socket.destroy();
    await until(() => h.deps.uploads.inUse(a.id) === 0, 'the slots to be released');
    const again = await uploadZip(s.port, a.token, 'again');
    expect(again.status, again.text).toBe(201);
  });
});

describe('keep-alive', () => {
  /** Requests over one kept-alive agent; says whether each reused the previous connection. */
  async function get(port: number, agent: http.Agent): Promise<{ status: number; reused: boolean }> {
    return new Promise((resolve, reject) => {
      const req = http.get({ port, host: '127.0.0.1', path: '/healthz', agent }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode!, reused: req.reusedSocket }));
      });
      req.on('error', reject);
    });
  }

  it('keeps an idle connection open for HTTP_KEEP_ALIVE_TIMEOUT_MS, then closes it (65 s by default, not Node\'s 5 s)', async () => {
    expect(h.config.HTTP_KEEP_ALIVE_TIMEOUT_MS).toBe(65_000);
    const s = await server({ HTTP_KEEP_ALIVE_TIMEOUT_MS: 3000 });
    expect(s.server.keepAliveTimeout).toBe(3000);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    let closedAt = 0;
    s.server.on('connection', (socket) => socket.on('close', () => (closedAt = Date.now())));
    try {
      expect(await get(s.port, agent)).toEqual({ status: 200, reused: false });
      // Idle within the advertised `Keep-Alive: timeout=3` less the agent's 1 s margin: the agent
      // reuses the connection, and the server must still hold it.
      await new Promise((r) => setTimeout(r, 1200));
      expect(await get(s.port, agent)).toEqual({ status: 200, reused: true });
      const idleFrom = Date.now();
      await until(() => closedAt > 0, 'the idle connection to close', 10_000);
      expect(closedAt - idleFrom).toBeGreaterThanOrEqual(2900);
    } finally {
      agent.destroy();
    }
  });
});
