/**
 * What every case starts from: tenants with keys, a small learnable data set uploaded through the
 * API, and an adapter trained on it, all made through the public HTTP API as a user would.
 */
import { makeShapesDataset, zipClassFolders } from '../../test/helpers/datasets.js';
import { ADMIN_TOKEN } from './service.js';
import { makeClient, type Client } from './http.js';

export interface TenantFixture {
  id: string;
  token: string;
  datasetId?: string;
  adapterId?: string;
  adapterName?: string;
  jobId?: string;
}

let zipCache: Buffer | undefined;
let pngCache: Buffer[] | undefined;

/** A 3-class shapes data set as a zip of class folders (rendered once per process). */
export async function datasetZip(): Promise<Buffer> {
  zipCache ??= await zipClassFolders(await makeShapesDataset({ classes: 3, perClass: 12, size: 28, seed: 7 }));
  return zipCache;
}

/** A few images to classify. */
export async function sampleImages(): Promise<Buffer[]> {
  pngCache ??= (await makeShapesDataset({ classes: 3, perClass: 2, size: 28, seed: 99 })).map((i) => i.data);
  return pngCache;
}

function expectStatus(what: string, got: { status: number; text: string; error?: string }, want: number): void {
  if (got.status !== want) throw new Error(`${what}: expected ${want}, got ${got.status} ${got.error ?? got.text.slice(0, 300)}`);
}

export async function createTenant(client: Client, name: string): Promise<TenantFixture> {
  const t = await client.send({ method: 'POST', path: '/v1/tenants', token: ADMIN_TOKEN, json: { name } });
  expectStatus('create tenant', t, 201);
  const id = (t.body as { id: string }).id;
  const k = await client.send({ method: 'POST', path: `/v1/tenants/${id}/keys`, token: ADMIN_TOKEN, json: { name: 'chaos', scopes: ['train', 'classify', 'manage'] } });
  expectStatus('create key', k, 201);
  return { id, token: (k.body as { token: string }).token };
}

export async function uploadDataset(client: Client, tenant: TenantFixture, name = 'shapes'): Promise<string> {
  const up = await client.send({ method: 'POST', path: `/v1/datasets?name=${name}`, token: tenant.token, headers: { 'content-type': 'application/zip' }, body: await datasetZip() });
  expectStatus('upload', up, 201);
  tenant.datasetId = (up.body as { id: string }).id;
  return tenant.datasetId;
}

/** Starts training and returns the job id. */
export async function startTraining(client: Client, tenant: TenantFixture, name: string, hyperparameters: Record<string, unknown> = { epochs: 3, warmupEpochs: 0, lr: 0.01 }): Promise<string> {
  const tr = await client.send({ method: 'POST', path: '/v1/adapters', token: tenant.token, json: { name, datasetId: tenant.datasetId, hyperparameters } });
  expectStatus('train', tr, 202);
  const body = tr.body as { adapter: { id: string }; job: { id: string } };
  tenant.adapterId = body.adapter.id;
  tenant.adapterName = name;
  tenant.jobId = body.job.id;
  return body.job.id;
}

export async function jobStatus(client: Client, tenant: TenantFixture, jobId: string): Promise<string | undefined> {
  const j = await client.send({ method: 'GET', path: `/v1/jobs/${jobId}`, token: tenant.token }, { timeoutMs: 5000 });
  return j.status === 200 ? (j.body as { status: string }).status : undefined;
}

/** Polls until the job ends; returns its final status. */
export async function waitForJob(client: () => Client, tenant: TenantFixture, jobId: string, timeoutMs = 180_000): Promise<string> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const s = await jobStatus(client(), tenant, jobId);
    if (s === 'succeeded' || s === 'failed' || s === 'cancelled') return s;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`job ${jobId} did not end within ${timeoutMs} ms`);
}

/** A tenant with a data set and a trained adapter named `name`. */
export async function trainedTenant(client: Client, tenantName: string, name = 'shapes'): Promise<TenantFixture> {
  const t = await createTenant(client, tenantName);
  await uploadDataset(client, t);
  const job = await startTraining(client, t, name);
  const end = await waitForJob(() => client, t, job);
  if (end !== 'succeeded') throw new Error(`training for ${tenantName} ended ${end}`);
  return t;
}

export function classifyAsk(tenant: TenantFixture, image: Buffer) {
  return { method: 'POST', path: `/v1/adapters/${tenant.adapterId}/classify`, token: tenant.token, json: { images: [image.toString('base64')] } };
}

/** A client for the service's current URL (it changes when the service restarts). */
export function makeClientFor(svc: { url: string }): Client {
  return makeClient(svc.url);
}
