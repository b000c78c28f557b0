/**
 * Dependency outages on a service that runs on PostgreSQL and S3 (its own database and its own
 * s3rver): while one is down, every answer stays within {2xx, 4xx, 503} — 503 `unavailable` /
 * `storage_error` with Retry-After where the request needs it, /healthz still 200 — and after
 * it is back the service recovers by itself. A training job started just before the S3 outage
 * must still succeed (transient storage errors are retried, not counted as the job's failures).
 */
import { countStatuses, outsideContract, send, type Answer, type Ask } from '../lib/http.js';
import { datasetZip, jobStatus, makeClientFor, startTraining, waitForJob, type TenantFixture } from '../lib/fixtures.js';
import { checkIntegrity } from '../lib/integrity.js';
import type { OwnDatabase, OwnS3 } from '../lib/outages.js';
import type { CaseRow, Tally } from '../lib/report.js';
import type { Service } from '../lib/service.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Probe {
  name: string;
  ask: Ask;
  /** Statuses acceptable while the dependency is down. */
  during: number[];
}

function probes(t: TenantFixture, image: Buffer, zip: Buffer): Probe[] {
  return [
    { name: 'classify', ask: { method: 'POST', path: `/v1/adapters/${t.adapterId}/classify`, token: t.token, json: { images: [image.toString('base64')] } }, during: [200, 503] },
    { name: 'list data sets', ask: { method: 'GET', path: '/v1/datasets', token: t.token }, during: [200, 503] },
    { name: 'upload', ask: { method: 'POST', path: '/v1/datasets?name=during-outage', token: t.token, headers: { 'content-type': 'application/zip' }, body: zip }, during: [503] },
    { name: 'download', ask: { method: 'GET', path: `/v1/adapters/${t.adapterId}/versions/1/file`, token: t.token }, during: [200, 503] },
    { name: 'readyz', ask: { method: 'GET', path: '/readyz' }, during: [503] },
    { name: 'healthz', ask: { method: 'GET', path: '/healthz' }, during: [200] },
  ];
}

async function duringOutage(svc: Service, list: Probe[], seconds: number, skip: Set<string>): Promise<{ answers: Answer[]; problems: string[] }> {
  const answers: Answer[] = [];
  const problems = new Set<string>();
  const until = Date.now() + seconds * 1000;
  while (Date.now() < until) {
    for (const p of list) {
      if (skip.has(p.name)) continue;
      const a = await send(svc.url, p.ask, { timeoutMs: 30_000 });
      answers.push(a);
      if (!p.during.includes(a.status)) problems.add(`${p.name}: ${a.status} ${a.code ?? a.error ?? ''}`);
      else if (a.status === 503 && p.name !== 'readyz' && a.headers['retry-after'] === undefined) problems.add(`${p.name}: 503 without Retry-After`);
    }
    await sleep(200);
  }
  return { answers, problems: [...problems] };
}

/** Time until every probe but readyz's outage answer is back to its healthy status. */
async function recover(svc: Service, list: Probe[], healthy: Record<string, number>): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    let ok = true;
    for (const p of list) {
      const want = healthy[p.name];
      if (want === undefined) continue;
      const a = await send(svc.url, p.ask, { timeoutMs: 30_000 });
      if (a.status !== want) ok = false;
    }
    if (ok) return Date.now() - t0;
    if (Date.now() - t0 > 120_000) return NaN;
    await sleep(100);
  }
}

export async function databaseOutage(svc: Service, db: OwnDatabase, t: TenantFixture, image: Buffer, seconds: number, tally: Tally): Promise<CaseRow> {
  const list = probes(t, image, await datasetZip());
  await db.block();
  const { answers, problems } = await duringOutage(svc, list, seconds, new Set());
  await db.unblock();
  const recoveryMs = await recover(svc, list, { classify: 200, 'list data sets': 200, readyz: 200 });
  // Recovered means writes too, on whatever pooled connections the outage left behind.
  for (let i = 0; i < 3; i++) {
    const up = await send(svc.url, { method: 'POST', path: `/v1/datasets?name=after-db-outage-${i}`, token: t.token, headers: { 'content-type': 'application/zip' }, body: await datasetZip() });
    if (up.status !== 201) problems.push(`upload after recovery: ${up.status} ${up.code ?? up.error ?? ''}`);
    answers.push(up);
  }
  const outside = answers.filter(outsideContract).length;
  tally.outsideContract += outside;
  tally.crashes += svc.crashes.length;
  return {
    case: `PostgreSQL unavailable for ${seconds} s`,
    sent: `${answers.length} requests during the outage (classify, list, upload, download, readyz, healthz)`,
    answered: `${JSON.stringify(countStatuses(answers))}; recovered ${(recoveryMs / 1000).toFixed(1)} s after connections were allowed again`,
    goal: '503 with Retry-After on whatever needs the database, /healthz 200, /readyz 503; recovery without a restart',
    pass: outside === 0 && problems.length === 0 && Number.isFinite(recoveryMs) && svc.crashes.length === 0,
    notes: problems,
  };
}

export async function storageOutage(svc: Service, s3: OwnS3, t: TenantFixture, image: Buffer, seconds: number, tally: Tally): Promise<CaseRow> {
  const zip = await datasetZip();
  const list = probes(t, image, zip);
  const client = () => makeClientFor(svc);
  await s3.kill();
  // Started with S3 already down: the job cannot read its data set, so it must wait the outage out.
  const jobId = await startTraining(client(), t, `during-s3-outage-${Date.now()}`, { epochs: 2, warmupEpochs: 0, lr: 0.01 });
  const { answers, problems } = await duringOutage(svc, list, seconds, new Set());
  const jobDuring = await jobStatus(client(), t, jobId);
  await s3.restart();
  const recoveryMs = await recover(svc, list, { readyz: 200, download: 200 });
  const end = await waitForJob(client, t, jobId, 600_000).catch(() => 'did not end');
  const c = client();
  const integrity = await checkIntegrity(c, [t]);
  c.close();
  tally.lostObjects += integrity.problems.length;
  const outside = answers.filter(outsideContract).length;
  tally.outsideContract += outside;
  tally.crashes += svc.crashes.length;
  return {
    case: `S3 server stopped for ${seconds} s`,
    sent: `a training job started while S3 was down; ${answers.length} requests during the outage`,
    answered: `${JSON.stringify(countStatuses(answers))}; recovered ${(recoveryMs / 1000).toFixed(1)} s after S3 came back; the job was ${jobDuring ?? '?'} during it and ended ${end}; ${integrity.versions} versions whole`,
    goal: '503 storage_error with Retry-After on what needs storage, /healthz 200; the job succeeds after the outage; nothing lost',
    pass: outside === 0 && problems.length === 0 && end === 'succeeded' && Number.isFinite(recoveryMs) && integrity.problems.length === 0 && svc.crashes.length === 0,
    notes: [...problems, ...integrity.problems],
  };
}
