/**
 * The worker ScaledObject's PostgreSQL query, run against the real schema (the checked-in
 * migrations) on every test database target: embedded PGlite, and real PostgreSQL — what KEDA
 * queries — when DATABASE_URL is set. A renamed table or job status breaks autoscaling silently
 * in a cluster (KEDA only logs the error); here it fails the suite.
 */
import path from 'node:path';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/metrics.js';
import { dbTargets, openTestDb, type TestDb } from '../helpers/db.js';
import { INFRA, find, loadK8sDir, type K8sObject } from './manifests.js';

const so = find<K8sObject & { spec: { triggers: { type: string; metadata: { query: string } }[] } }>(
  loadK8sDir(path.join(INFRA, 'k8s', 'base')).objects,
  'ScaledObject',
  'dtl-host-worker',
);
const query = so.spec.triggers.find((t) => t.type === 'postgresql')?.metadata.query ?? '';

describe.each(dbTargets())('KEDA worker query on the migrated schema (%s)', (kind) => {
  let t: TestDb;
  beforeAll(async () => {
    t = await openTestDb(kind);
  });
  afterAll(() => t.close());

  const rowsOf = (res: unknown): Record<string, unknown>[] =>
    Array.isArray(res) ? (res as Record<string, unknown>[]) : (res as { rows: Record<string, unknown>[] }).rows;
  const count = async () => {
    const rows = rowsOf(await t.db.execute(sql.raw(query)));
    // KEDA reads the first column of the first row as a number.
    expect(rows).toHaveLength(1);
    return Number(Object.values(rows[0])[0]);
  };
  const insert = (status: string, n: number) =>
    t.db.execute(sql`insert into jobs (kind, status) select 'train', ${status}::job_status from generate_series(1, ${n}::int)`);

  it('is zero on an empty queue (workers scale to zero)', async () => {
    expect(query).not.toBe('');
    expect(await count()).toBe(0);
  });

  it('counts queued and running jobs, not finished ones', async () => {
    await insert('queued', 3);
    await insert('running', 2);
    await insert('succeeded', 4);
    await insert('failed', 1);
    await insert('cancelled', 1);
    expect(await count()).toBe(5);
    await t.db.execute(sql`update jobs set status = 'succeeded' where status = 'running'`);
    expect(await count()).toBe(3);
  });
});

/**
 * The API ScaledObject's Prometheus queries against what /metrics really exports, per pod: the
 * metric names exist with the right types, and the queue-depth selector picks exactly one series
 * per pod — the all-tenants total — whether per-tenant series are on or off, so the sum is the
 * real depth (Prometheus adds the `namespace` label when it scrapes; it is not ours to match).
 */
describe('KEDA API queries on the exported metrics', () => {
  const api = find<K8sObject & { spec: { triggers: { type: string; metadata: { query: string } }[] } }>(
    loadK8sDir(path.join(INFRA, 'k8s', 'base')).objects,
    'ScaledObject',
    'dtl-host-api',
  );
  const queries = api.spec.triggers.map((t) => t.metadata.query);

  /** The samples of `name` whose labels satisfy every `k="v"` matcher (a missing label is ""). */
  const select = (text: string, name: string, matchers: Record<string, string>) =>
    text
      .split('\n')
      .filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
      .map((l) => {
        const labels = Object.fromEntries([...(/\{([^}]*)\}/.exec(l)?.[1] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
        return { labels, value: Number(l.slice(l.lastIndexOf(' ') + 1)) };
      })
      .filter((s) => Object.entries(matchers).every(([k, v]) => (s.labels[k] ?? '') === v));

  it.each([false, true])('the queue-depth sum is the real depth (per-tenant series %s)', async (tenantLabels) => {
    const q = queries.find((x) => x.includes('dtl_classify_queue_depth')) ?? '';
    const m = /^sum\((\w+)\{([^}]*)\}\)$/.exec(q);
    expect(m, q).not.toBeNull();
    const matchers = Object.fromEntries([...m![2].matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]).filter(([k]) => k !== 'namespace'));
    const metrics = createMetrics({ defaultMetrics: false, tenantLabels });
    metrics.setSources({ queue: () => ({ queueDepth: 7, queueDepthByTenant: { 'tenant-a': 4, 'tenant-b': 3 }, inFlight: 0 }) });
    const text = await metrics.render();
    expect(text).toContain('# TYPE dtl_classify_queue_depth gauge');
    const picked = select(text, m![1], matchers);
    expect(picked.reduce((a, s) => a + s.value, 0)).toBe(7);
  });

  it('the request-rate query reads a counter the API exports', async () => {
    expect(queries.some((x) => /rate\(dtl_http_requests_total\{[^}]*\}\[\d+m\]\)/.test(x))).toBe(true);
    const metrics = createMetrics({ defaultMetrics: false });
    metrics.observeRequest({ method: 'GET', route: '/v1/me', status: 200 }, 0.01);
    expect(await metrics.render()).toMatch(/# TYPE dtl_http_requests_total counter\ndtl_http_requests_total\{method="GET",route="\/v1\/me",status="200"\} 1/);
  });
});
