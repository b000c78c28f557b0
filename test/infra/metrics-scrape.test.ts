/**
 * /metrics of a running server (startServer, real HTTP), scraped while classify requests wait in
 * the queue: `promtool check metrics` (Debian package prometheus) finds nothing to complain about,
 * no gauge is named *_total, the standard process_* / nodejs_* names are there, and the API
 * ScaledObject's queue-depth query evaluated on the scrape gives the true number of waiting
 * requests with per-tenant series on (before the fix it counted each request twice).
 */
import { execFile } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/server.js';
import { makeTempDir } from '../helpers/db.js';
import { ADMIN_TOKEN, FIXTURE_BACKBONE, fixturePath } from '../routes/harness.js';
import { INFRA, find, loadK8sDir, type K8sObject } from './manifests.js';

const METRICS_TOKEN = 'metrics-token-0123456789abcdef';
const WAITING = { a: 5, b: 3 };

function promtool(text: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve, reject) => {
    const child = execFile('promtool', ['check', 'metrics'], (err, stdout, stderr) => {
      if (err !== null && (err as NodeJS.ErrnoException).code === 'ENOENT') {
        reject(new Error('promtool is not installed: apt-get install prometheus (.ci/run does)'));
        return;
      }
      resolve({ code: err === null ? 0 : Number((err as { code?: number }).code ?? 1), out: `${stdout}${stderr}` });
    });
    child.stdin!.end(text);
  });
}

/** Evaluates `sum(name{k="v",…})` on a Prometheus text scrape; `namespace` is Prometheus's own label, added when it scrapes. */
function evalSum(query: string, text: string): number {
  const m = /^sum\((\w+)\{([^}]*)\}\)$/.exec(query);
  if (m === null) throw new Error(`not a sum over one selector: ${query}`);
  const matchers = [...m[2].matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]).filter(([k]) => k !== 'namespace');
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${m[1]}{`) || l.startsWith(`${m[1]} `))
    .map((l) => ({ labels: Object.fromEntries([...(/\{([^}]*)\}/.exec(l)?.[1] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]])), value: Number(l.slice(l.lastIndexOf(' ') + 1)) }))
    .filter((s) => matchers.every(([k, v]) => (s.labels[k] ?? '') === v))
    .reduce((a, s) => a + s.value, 0);
}

describe('a real /metrics scrape', () => {
  let dir: string;
  let server: RunningServer;
  let scrape: string;
  const pending: Promise<Response>[] = [];

  beforeAll(async () => {
    dir = await makeTempDir('dtl-scrape');
    server = await startServer({
      DATA_DIR: path.join(dir, 'data'),
      BACKBONE: FIXTURE_BACKBONE,
      PORT: '0',
      HOST: '127.0.0.1',
      ADMIN_TOKEN,
      TFJS_BACKEND: 'wasm',
      LOG_LEVEL: 'warn',
      WORKER_ENABLED: 'false',
      METRICS_TOKEN,
      METRICS_TENANT_LABELS: 'true',
      // Requests wait for a batch to fill for up to 5 s: long enough to scrape them waiting.
      BATCH_MAX_SIZE: '64',
      BATCH_MAX_WAIT_MS: '5000',
    });
    const call = (method: string, p: string, token: string, body?: string | Buffer, type = 'application/json') =>
      fetch(`${server.url}${p}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': type }, body });
    const adapter = await readFile(fixturePath('adapter.safetensors'));
    const image = await readFile(fixturePath(((JSON.parse(await readFile(fixturePath('expected.json'), 'utf8')) as { cases: { image: string }[] }).cases[0]).image));
    for (const [name, n] of Object.entries(WAITING)) {
      const t = (await (await call('POST', '/v1/tenants', ADMIN_TOKEN, JSON.stringify({ name }))).json()) as { id: string };
      const k = (await (await call('POST', `/v1/tenants/${t.id}/keys`, ADMIN_TOKEN, JSON.stringify({ name: 'k', scopes: ['classify', 'train'] }))).json()) as { token: string };
      expect((await call('POST', '/v1/adapters/import?name=golden', k.token, adapter, 'application/octet-stream')).status).toBe(201);
      for (let i = 0; i < n; i++) pending.push(call('POST', '/v1/adapters/golden/classify', k.token, image, 'image/png'));
    }
    const total = WAITING.a + WAITING.b;
    for (let i = 0; i < 40; i++) {
      scrape = await (await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).text();
      if (new RegExp(`^dtl_classify_queue_depth ${total}$`, 'm').test(scrape)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
  });
  afterAll(async () => {
    await Promise.allSettled(pending);
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('caught the requests waiting, split by tenant', () => {
    expect(scrape).toMatch(/^dtl_classify_queue_depth 8$/m);
    expect(scrape.match(/^dtl_classify_queue_depth_by_tenant\{tenant="[0-9a-f-]{36}"\} \d+$/gm)?.map((l) => Number(l.split(' ')[1])).sort()).toEqual([3, 5]);
  });

  it('passes promtool check metrics', async () => {
    const { code, out } = await promtool(scrape);
    expect(out).toBe('');
    expect(code).toBe(0);
  });

  it('has no gauge named *_total and the standard process_* / nodejs_* names', () => {
    const types = [...scrape.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => ({ name: m[1], type: m[2] }));
    expect(types.filter((t) => t.type !== 'counter' && t.name.endsWith('_total'))).toEqual([]);
    for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'process_start_time_seconds', 'nodejs_heap_size_used_bytes', 'nodejs_eventloop_lag_seconds']) {
      expect(types.some((t) => t.name === name), name).toBe(true);
    }
    expect(types.filter((t) => t.name.startsWith('dtl_process_') || t.name.startsWith('dtl_nodejs_'))).toEqual([]);
  });

  it("the KEDA queue-depth query on this scrape is the true queue length", () => {
    const api = find<K8sObject & { spec: { triggers: { type: string; metadata: { query: string } }[] } }>(loadK8sDir(path.join(INFRA, 'k8s', 'base')).objects, 'ScaledObject', 'dtl-host-api');
    const query = api.spec.triggers.map((t) => t.metadata.query).find((q) => q.includes('dtl_classify_queue_depth')) ?? '';
    expect(evalSum(query, scrape)).toBe(WAITING.a + WAITING.b);
  });
});
