/**
 * Tenant isolation and authentication, generated from the route table. For every registered
 * route: no key and a revoked key get 401; a key without the route's scope gets 403; admin routes
 * refuse tenant keys. For every route that names an object (in its path, or in its body per the
 * recipe below), tenant B's key on tenant A's object gets the very same 404 as a missing object,
 * and A's data is unchanged afterwards. A route without a recipe fails the coverage test.
 */
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listAll } from '../../src/storage/index.js';
import { makeShapesDataset, zipClassFolders } from '../helpers/datasets.js';
import { fixturePath, startHarness, type Harness, type Reply, type RequestBody } from './harness.js';
import { fillPath, routeTable, type RouteEntry } from './route-table.js';

const ROUTES = routeTable();
const ALL_SCOPES = ['classify', 'train', 'manage'];
/** Path parameters that are ids of a tenant's objects (version and alias are scoped by their adapter). */
const OBJECT_PARAMS = new Set(['adapterId', 'datasetId', 'jobId', 'keyId', 'tenantId']);
const GHOST = '00000000-0000-4000-8000-00000000dead';

interface Fixtures {
  ids: Record<string, string>;
  png: string;
  zip: Buffer;
  adapterFile: Buffer;
}

interface Recipe {
  body: (f: Fixtures) => { body: RequestBody | Record<string, unknown>; contentType?: string };
  /** The body names one of A's objects: B sending it must get 404 (ghost: the same body naming nothing). */
  foreign?: { body: (f: Fixtures) => Record<string, unknown>; ghost: (f: Fixtures) => Record<string, unknown> };
}

/** How to call each route that takes a body. A new route with a body needs an entry here. */
const RECIPES: Record<string, Recipe> = {
  createTenant: { body: () => ({ body: { name: 'iso-new' } }) },
  adminCreateKey: { body: () => ({ body: { scopes: ['classify'] } }) },
  createKey: { body: () => ({ body: { scopes: ['classify'] } }) },
  uploadDataset: { body: (f) => ({ body: f.zip, contentType: 'application/zip' }) },
  importAdapter: { body: (f) => ({ body: f.adapterFile, contentType: 'application/octet-stream' }) },
  trainAdapter: {
    body: (f) => ({ body: { datasetId: f.ids.datasetId, name: 'iso-train' } }),
    foreign: { body: (f) => ({ datasetId: f.ids.datasetId, name: 'iso-train' }), ghost: () => ({ datasetId: GHOST, name: 'iso-train' }) },
  },
  trainAdapterVersion: { body: (f) => ({ body: { datasetId: f.ids.datasetId } }) },
  setAdapterAlias: { body: () => ({ body: { version: 1 } }) },
  classify: { body: (f) => ({ body: { images: [f.png] } }) },
  classifyFanOut: {
    body: (f) => ({ body: { image: f.png, adapters: [f.ids.adapterId] } }),
    foreign: { body: (f) => ({ image: f.png, adapters: [f.ids.adapterId] }), ghost: (f) => ({ image: f.png, adapters: [GHOST] }) },
  },
};

let h: Harness;
let f: Fixtures;
let A: { id: string; token: string; keyId: string };
let B: { id: string; token: string };
let revokedA: string;

function query(route: RouteEntry, values: Record<string, string>): string {
  const url = fillPath(route.path, values);
  // Raw uploads take their name from the query.
  return route.operationId === 'uploadDataset' || route.operationId === 'importAdapter' ? `${url}?name=iso-${route.operationId}` : url;
}

async function send(route: RouteEntry, token: string | undefined, values: Record<string, string>, body?: Record<string, unknown>): Promise<Reply> {
  const recipe = RECIPES[route.operationId];
  let payload: { body?: RequestBody | Record<string, unknown>; contentType?: string } = {};
  if (body !== undefined) payload = { body };
  else if (route.hasBody) payload = recipe.body(f);
  const headers: Record<string, string> = payload.contentType ? { 'content-type': payload.contentType } : {};
  return h.call(route.method, query(route, values), { token, body: payload.body, headers });
}

/** Everything tenant A has, as A sees it, plus its stored objects. */
async function snapshotA(): Promise<string> {
  const get = async (url: string) => (await h.call('GET', url, { token: A.token })).body;
  const adapters = await get('/v1/adapters');
  const versions = await Promise.all(adapters.items.map((a: { id: string }) => get(`/v1/adapters/${a.id}/versions`)));
  const keys = (await get('/v1/keys')).items.map((k: Record<string, unknown>) => ({ ...k, lastUsedAt: null }));
  const blobs = (await listAll(h.deps.blobs, `tenants/${A.id}/`)).map((e) => `${e.key}:${e.size}`);
  return JSON.stringify({ adapters, versions, keys, datasets: await get('/v1/datasets'), jobs: await get('/v1/jobs'), blobs });
}

/** Ids replaced, so a 404 about A's object can be compared with one about a missing object. */
const anonymise = (r: Reply, ids: string[]) => {
  let text = JSON.stringify({ status: r.status, code: r.body?.error?.code, message: r.body?.error?.message, details: r.body?.error?.details });
  for (const id of ids) text = text.replaceAll(id, '<id>');
  return text;
};

beforeAll(async () => {
  h = await startHarness({ env: { RATE_LIMIT_BURST: '100000', RATE_LIMIT_RPS: '10000' } });
  A = await h.tenant('iso-a');
  B = await h.tenant('iso-b');
  revokedA = (await h.admin('POST', `/v1/tenants/${A.id}/keys`, { scopes: ALL_SCOPES })).body.token;
  const revokedId = (await h.call('GET', '/v1/me', { token: revokedA })).body.keyId;
  await h.call('DELETE', `/v1/keys/${revokedId}`, { token: A.token });
  const png = await readFile(fixturePath('input-0.png'));
  const zip = await zipClassFolders(await makeShapesDataset({ classes: 2, perClass: 3, size: 32, seed: 1 }));
  const adapterFile = await readFile(fixturePath('adapter.safetensors'));
  const ds = await h.call('POST', '/v1/datasets?name=a-data', { token: A.token, body: zip, headers: { 'content-type': 'application/zip' } });
  const ad = await h.call('POST', '/v1/adapters/import?name=a-adapter', { token: A.token, body: adapterFile, headers: { 'content-type': 'application/octet-stream' } });
  await h.call('PUT', `/v1/adapters/${ad.body.adapter.id}/aliases/prod`, { token: A.token, body: { version: 1 } });
  // No worker runs here: the job stays queued, an object like any other.
  const job = await h.call('POST', '/v1/adapters', { token: A.token, body: { datasetId: ds.body.id, name: 'a-trained' } });
  expect([ds.status, ad.status, job.status]).toEqual([201, 201, 202]);
  f = {
    ids: { adapterId: ad.body.adapter.id, datasetId: ds.body.id, jobId: job.body.job.id, keyId: A.keyId, tenantId: A.id, version: '1', alias: 'prod' },
    png: png.toString('base64'),
    zip,
    adapterFile,
  };
});
afterAll(async () => {
  await h?.close();
});

describe('route table coverage', () => {
  it('has every route declared through defineRoute, with a recipe when it takes a body and fixtures for its path', () => {
    const problems: string[] = [];
    for (const r of ROUTES) {
      if (!['public', 'admin', 'tenant'].includes(r.auth)) problems.push(`${r.method} ${r.path}: not declared with defineRoute (no x-dtl-auth)`);
      if (r.hasBody && RECIPES[r.operationId] === undefined) problems.push(`${r.method} ${r.path}: takes a body but has no recipe in RECIPES (${r.operationId})`);
      for (const p of r.pathParams) if (!['version', 'alias', ...OBJECT_PARAMS].includes(p)) problems.push(`${r.method} ${r.path}: unknown path parameter '${p}'`);
    }
    for (const id of Object.keys(RECIPES)) if (!ROUTES.some((r) => r.operationId === id)) problems.push(`recipe '${id}' names no route`);
    expect(problems).toEqual([]);
    // The suite really is generated: it sees the routes of every resource.
    expect(ROUTES.filter((r) => r.auth === 'tenant').length).toBeGreaterThanOrEqual(20);
  });
});

const tenantRoutes = ROUTES.filter((r) => r.auth === 'tenant');
const adminRoutes = ROUTES.filter((r) => r.auth === 'admin');
const idRoutes = tenantRoutes.filter((r) => r.pathParams.some((p) => OBJECT_PARAMS.has(p)) || RECIPES[r.operationId]?.foreign !== undefined);

describe.each(tenantRoutes.map((r) => [`${r.method} ${r.path}`, r] as const))('%s', (_name, route) => {
  it('refuses no key, a malformed key and a revoked key with 401', async () => {
    for (const token of [undefined, 'dtl_nothing', revokedA]) {
      const r = await send(route, token, f.ids);
      expect([r.status, r.body?.error?.code], `token ${String(token).slice(0, 12)}`).toEqual([401, 'unauthenticated']);
    }
  });
});

// Routes open to any key (scopes: []) have no scope to lack.
const scopedRoutes = tenantRoutes.filter((r) => r.scopes.length > 0);

describe.each(scopedRoutes.map((r) => [`${r.method} ${r.path} (${r.scopes.join('|')})`, r] as const))('%s', (_name, route) => {
  it('refuses a key without its scope with 403 and changes nothing', async () => {
    const others = ALL_SCOPES.filter((s) => !route.scopes.includes(s));
    expect(others.length).toBeGreaterThan(0);
    const key = (await h.admin('POST', `/v1/tenants/${A.id}/keys`, { scopes: others })).body.token;
    const before = await snapshotA();
    const r = await send(route, key, f.ids);
    expect([r.status, r.body?.error?.code]).toEqual([403, 'forbidden']);
    expect(await snapshotA()).toBe(before);
  });
});

describe.each(idRoutes.map((r) => [`${r.method} ${r.path}`, r] as const))('tenant B on A’s object: %s', (_name, route) => {
  it('gets the same 404 as for a missing object, and changes nothing of A', async () => {
    const recipe = RECIPES[route.operationId];
    const before = await snapshotA();
    const foreign = await send(route, B.token, f.ids, recipe?.foreign?.body(f));
    const ghostIds = Object.fromEntries(Object.entries(f.ids).map(([k, v]) => [k, OBJECT_PARAMS.has(k) ? GHOST : v]));
    const missing = await send(route, B.token, ghostIds, recipe?.foreign?.ghost(f));
    expect([foreign.status, foreign.body?.error?.code]).toEqual([404, 'not_found']);
    expect(foreign.body.error.message).not.toMatch(/^no route/);
    // Not vacuous: the owner reaches the very same object (checked where that changes nothing).
    if (route.method === 'GET') {
      // Status only: an event stream of A's queued job would never end.
      const own = await h.app.request(query(route, f.ids), { headers: { authorization: `Bearer ${A.token}` } });
      await own.body?.cancel();
      expect(own.status).toBe(200);
    }
    const ids = [...Object.values(f.ids).filter((v) => v.length > 8), GHOST];
    expect(anonymise(foreign, ids)).toBe(anonymise(missing, ids));
    expect(await snapshotA()).toBe(before);
  });
});

describe('lists show only the caller’s own objects', () => {
  it.each(tenantRoutes.filter((r) => r.method === 'GET' && r.pathParams.length === 0).map((r) => [r.path, r] as const))('%s', async (_p, route) => {
    const r = await send(route, B.token, {});
    expect(r.status).toBe(200);
    for (const [name, id] of Object.entries(f.ids)) if (OBJECT_PARAMS.has(name)) expect(r.text, name).not.toContain(id);
  });
});

describe.each(adminRoutes.map((r) => [`${r.method} ${r.path}`, r] as const))('admin %s', (_name, route) => {
  it('refuses no token, a wrong token and tenant keys with 401', async () => {
    for (const token of [undefined, 'not-the-admin-token', A.token]) {
      const r = await send(route, token, f.ids);
      expect([r.status, r.body?.error?.code]).toEqual([401, 'unauthenticated']);
    }
  });
});
