/**
 * Process faults on the default service (PGlite + disk, as `npm start` runs): kill -9 of the API
 * while it ingests an upload, and of the in-process worker while it trains. After each, the
 * service is restarted on the same data directory and must come back whole.
 */
import { makeShapesDataset, zipClassFolders } from '../../test/helpers/datasets.js';
import { makeClient, send } from '../lib/http.js';
import { jobStatus, startTraining, waitForJob, type TenantFixture } from '../lib/fixtures.js';
import { checkIntegrity } from '../lib/integrity.js';
import type { CaseRow, Tally } from '../lib/report.js';
import type { Service } from '../lib/service.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs: number, everyMs = 100): Promise<T> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    await sleep(everyMs);
  }
  throw new Error(`${what}: not within ${timeoutMs} ms`);
}

/** Restart and time until /healthz answers and a classify of `t`'s adapter is 200 again. */
async function restartAndRecover(svc: Service, t: TenantFixture, image: Buffer): Promise<number> {
  const t0 = Date.now();
  await svc.restart();
  await waitFor('classify after restart', async () => {
    const r = await send(svc.url, { method: 'POST', path: `/v1/adapters/${t.adapterId}/classify`, token: t.token, json: { images: [image.toString('base64')] } }, { timeoutMs: 10_000 });
    return r.status === 200 ? true : undefined;
  }, 60_000);
  return Date.now() - t0;
}

export async function killDuringUpload(svc: Service, t: TenantFixture, image: Buffer, tally: Tally, failWithinMs: number): Promise<CaseRow> {
  const big = await zipClassFolders(await makeShapesDataset({ classes: 10, perClass: 150, size: 64, seed: 3 }));
  const upload = send(svc.url, { method: 'POST', path: '/v1/datasets?name=interrupted', token: t.token, headers: { 'content-type': 'application/zip' }, body: big }, { timeoutMs: 120_000 });
  // Kill while the data set is being processed: its row says 'processing'.
  let processingId: string | undefined;
  try {
    processingId = await waitFor('a processing data set', async () => {
      const r = await send(svc.url, { method: 'GET', path: '/v1/datasets?status=processing', token: t.token }, { timeoutMs: 5000 });
      return (r.body as { items?: Array<{ id: string }> } | undefined)?.items?.[0]?.id;
    }, 60_000, 20);
  } catch {
    /* the upload finished before it could be seen processing: killed anyway below */
  }
  await svc.kill9();
  const killedAt = Date.now();
  const answer = await upload;
  const recoveryMs = await restartAndRecover(svc, t, image);
  const client = makeClient(svc.url);
  let failedAfterMs = NaN;
  let finalStatus = 'none';
  if (processingId !== undefined) {
    finalStatus = await waitFor('the interrupted data set to fail', async () => {
      const r = await client.send({ method: 'GET', path: `/v1/datasets/${processingId}`, token: t.token });
      const s = (r.body as { status?: string } | undefined)?.status;
      return r.status === 404 ? 'gone' : s === 'processing' ? undefined : s;
    }, failWithinMs + 30_000, 500).catch(() => 'processing');
    failedAfterMs = Date.now() - killedAt;
  }
  const integrity = await checkIntegrity(client, [t]);
  client.close();
  tally.lostObjects += integrity.problems.length;
  const crashes = svc.crashes.length;
  tally.crashes += crashes;
  const seenOk = processingId === undefined || (finalStatus !== 'processing' && failedAfterMs <= failWithinMs);
  return {
    case: 'kill -9 of the API mid-upload',
    sent: `a ${(big.length / 1048576).toFixed(1)} MiB zip (1,500 images); SIGKILL while its data set was ${processingId === undefined ? 'not yet seen processing' : "'processing'"}`,
    answered: `the upload: ${answer.status === 0 ? 'connection lost (expected)' : answer.status}; back up and classifying ${(recoveryMs / 1000).toFixed(1)} s after restart; the data set ${finalStatus} ${Number.isNaN(failedAfterMs) ? '' : `${(failedAfterMs / 1000).toFixed(1)} s after the kill`}; ${integrity.versions} versions whole, ${integrity.problems.length} problems`,
    goal: `interrupted data set 'failed' within ${failWithinMs / 1000} s of the kill; every stored version downloads whole; 0 crashes`,
    pass: seenOk && integrity.problems.length === 0 && crashes === 0 && processingId !== undefined,
    notes: integrity.problems,
  };
}

export async function killDuringTraining(svc: Service, t: TenantFixture, image: Buffer, tally: Tally): Promise<CaseRow> {
  const client = () => makeClient(svc.url);
  const jobId = await startTraining(client(), t, `killed-${Date.now()}`, { epochs: 25, warmupEpochs: 0, lr: 0.01, patience: 0 });
  const adapterId = t.adapterId!;
  await waitFor('the job running with progress', async () => {
    const r = await send(svc.url, { method: 'GET', path: `/v1/jobs/${jobId}`, token: t.token });
    const b = r.body as { status?: string; progress?: unknown } | undefined;
    return b?.status === 'running' && b.progress !== null && b.progress !== undefined ? true : undefined;
  }, 120_000, 50);
  await svc.kill9();
  const killedAt = Date.now();
  const recoveryMs = await restartAndRecover(svc, t, image);
  const end = await waitForJob(client, t, jobId, 300_000).catch(() => jobStatus(client(), t, jobId));
  const doneAfterMs = Date.now() - killedAt;
  const c = client();
  const versions = await c.send({ method: 'GET', path: `/v1/adapters/${adapterId}/versions`, token: t.token });
  const job = await c.send({ method: 'GET', path: `/v1/jobs/${jobId}`, token: t.token });
  const count = ((versions.body as { items?: unknown[] }).items ?? []).length;
  const attempts = (job.body as { attempts?: number }).attempts;
  const integrity = await checkIntegrity(c, [t]);
  c.close();
  tally.lostObjects += integrity.problems.length;
  const crashes = svc.crashes.length;
  tally.crashes += crashes;
  return {
    case: 'kill -9 of the worker mid-job',
    sent: 'a 25-epoch training job; SIGKILL of the process running it after its first progress event',
    answered: `back up ${(recoveryMs / 1000).toFixed(1)} s after restart; job ${end} ${(doneAfterMs / 1000).toFixed(1)} s after the kill (attempts ${attempts}); ${count} version(s) published; ${integrity.problems.length} integrity problems`,
    goal: 'the job finishes exactly once (one version) after the lease expires; nothing lost',
    pass: end === 'succeeded' && count === 1 && integrity.problems.length === 0 && crashes === 0,
    notes: integrity.problems,
  };
}
