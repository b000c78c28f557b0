/**
 * The reliability suite as a function: which cases run, on which services, in which order.
 * `chaos/run.ts` is its command line; `test/chaos/chaos.test.ts` runs the fast profile in `npm test`.
 */
import { killDuringTraining, killDuringUpload } from './cases/faults.js';
import { hostileCase } from './cases/hostile.js';
import { isolationCase } from './cases/isolation.js';
import { loadCase } from './cases/load.js';
import { databaseOutage, storageOutage } from './cases/outages.js';
import { HOSTILE_ENV } from './lib/corpus.js';
import { createTenant, datasetZip, sampleImages, trainedTenant } from './lib/fixtures.js';
import { makeClient } from './lib/http.js';
import { createOwnDatabase, startOwnS3 } from './lib/outages.js';
import { emptyTally, type CaseRow, type Tally } from './lib/report.js';
import { ADMIN_TOKEN, startService, type Service } from './lib/service.js';

export type CaseName = 'hostile' | 'isolation' | 'load' | 'kill-upload' | 'kill-worker' | 'db-outage' | 's3-outage';

export interface SuiteOptions {
  cases: CaseName[];
  load: { clients: number; seconds: number };
  outageSeconds: number;
  /** PostgreSQL server for the outage cases (their own database on it); without it they are reported as not run. */
  databaseUrl?: string;
  log?(line: string): void;
}

export const PROFILES: Record<'full' | 'quick', Omit<SuiteOptions, 'databaseUrl' | 'log'>> = {
  full: { cases: ['hostile', 'isolation', 'load', 'kill-upload', 'kill-worker', 'db-outage', 's3-outage'], load: { clients: 200, seconds: 60 }, outageSeconds: 16 },
  quick: { cases: ['hostile', 'isolation', 'load', 'kill-worker'], load: { clients: 16, seconds: 4 }, outageSeconds: 4 },
};

/** Settings every service of the suite runs with: limits out of the load's way, short leases so recovery is quick to observe. */
const SUITE_ENV = { RATE_LIMIT_RPS: '100000', RATE_LIMIT_BURST: '100000', JOB_LEASE_MS: '5000', ...HOSTILE_ENV };
const INGEST_FAIL_WITHIN_MS = 120_000;

export async function runSuite(opts: SuiteOptions): Promise<{ rows: CaseRow[]; tally: Tally }> {
  const log = opts.log ?? (() => {});
  const tally = emptyTally();
  const rows: CaseRow[] = [];
  const want = new Set(opts.cases);
  const record = (row: CaseRow) => {
    rows.push(row);
    log(`${row.pass ? 'pass' : 'FAIL'}  ${row.case}: ${row.answered}`);
    for (const n of row.notes ?? []) log(`      ${n}`);
  };
  const images = await sampleImages();
  const services: Service[] = [];
  try {
    if (['hostile', 'isolation', 'load', 'kill-upload', 'kill-worker'].some((c) => want.has(c as CaseName))) {
      log('starting the default service (PGlite + disk)');
      const svc = await startService(SUITE_ENV);
      services.push(svc);
      const client = makeClient(svc.url);
      const a = await trainedTenant(client, 'chaos-a');
      const b = await trainedTenant(client, 'chaos-b');
      const keys = await client.send({ method: 'GET', path: '/v1/keys', token: a.token });
      const keyId = (keys.body as { items: Array<{ id: string }> }).items[0].id;
      const victim = await createTenant(client, 'chaos-revoked');
      const vk = await client.send({ method: 'GET', path: `/v1/tenants/${victim.id}/keys`, token: ADMIN_TOKEN });
      await client.send({ method: 'DELETE', path: `/v1/tenants/${victim.id}/keys/${(vk.body as { items: Array<{ id: string }> }).items[0].id}`, token: ADMIN_TOKEN });
      client.close();
      if (want.has('hostile')) record(await hostileCase(svc, { a, b, revokedToken: victim.token, png: images[0], datasetZip: await datasetZip() }, tally));
      if (want.has('isolation')) record(await isolationCase(svc, { ...a, keyId }, b, tally));
      if (want.has('load')) record(await loadCase(svc, [a, b], images, opts.load, tally));
      if (want.has('kill-worker')) record(await killDuringTraining(svc, a, images[0], tally));
      if (want.has('kill-upload')) record(await killDuringUpload(svc, b, images[0], tally, INGEST_FAIL_WITHIN_MS));
    }
    if (want.has('db-outage') || want.has('s3-outage')) {
      if (opts.databaseUrl === undefined) {
        for (const c of ['db-outage', 's3-outage'].filter((x) => want.has(x as CaseName))) {
          record({ case: c, sent: 'not run: DATABASE_URL is not set', answered: '—', goal: 'runs against its own database on the DATABASE_URL server', pass: false });
        }
      } else {
        log('starting a service on its own PostgreSQL database and its own S3 server');
        const db = await createOwnDatabase(opts.databaseUrl);
        const s3 = await startOwnS3();
        try {
          const svc = await startService({ ...SUITE_ENV, DATABASE_URL: db.url, ...s3.env });
          services.push(svc);
          const client = makeClient(svc.url);
          const t = await trainedTenant(client, 'chaos-outage');
          client.close();
          if (want.has('db-outage')) record(await databaseOutage(svc, db, t, images[0], opts.outageSeconds, tally));
          if (want.has('s3-outage')) record(await storageOutage(svc, s3, t, images[0], opts.outageSeconds, tally));
          await svc.stop();
        } finally {
          await s3.stop();
          await db.drop();
        }
      }
    }
  } finally {
    for (const s of services) await s.stop().catch(() => {});
  }
  return { rows, tally };
}

export function suitePassed(rows: CaseRow[], tally: Tally): boolean {
  return rows.every((r) => r.pass) && tally.leaks === 0 && tally.crashes === 0 && tally.outsideContract === 0 && tally.lostObjects === 0 && tally.livenessMisses === 0;
}
