/** The probe app a worker process serves: liveness and metrics (training jobs from the job table). */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildWorkerApp } from '../../src/app.js';
import * as jobsRepo from '../../src/db/repos/jobs.js';
import * as tenantsRepo from '../../src/db/repos/tenants.js';
import { createMetrics } from '../../src/metrics.js';
import { openTestDb, type TestDb } from '../helpers/db.js';

let db: TestDb;
beforeAll(async () => {
  db = await openTestDb('pglite');
});
afterAll(async () => {
  await db?.close();
});

describe('worker probe app', () => {
  it('answers /healthz and exports training jobs by status at /metrics', async () => {
    const tenant = await tenantsRepo.create(db.db, { name: 'w' });
    await jobsRepo.enqueue(db.db, { kind: 'train', tenantId: tenant.id, payload: {} });
    await jobsRepo.enqueue(db.db, { kind: 'train', tenantId: tenant.id, payload: {} });
    const app = buildWorkerApp({ metrics: createMetrics(), database: db });
    expect((await app.request('/healthz')).status).toBe(200);
    const text = await (await app.request('/metrics')).text();
    expect(text).toMatch(/dtl_training_jobs\{status="queued"\} 2/);
    expect(text).toContain('dtl_process_cpu_user_seconds_total');
    expect((await app.request('/v1/tenants')).status).toBe(404);
  });
});
