/**
 * The worker ScaledObject's PostgreSQL query, run against the real schema (the checked-in
 * migrations) on every test database target: embedded PGlite, and real PostgreSQL — what KEDA
 * queries — when DATABASE_URL is set. A renamed table or job status breaks autoscaling silently
 * in a cluster (KEDA only logs the error); here it fails the suite.
 */
import path from 'node:path';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
