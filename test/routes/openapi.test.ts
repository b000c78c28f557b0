/**
 * The OpenAPI document: OpenAPI 3.1, structurally valid (checked here: no 3.1 schema validator is
 * installed), every `$ref` resolvable, path templates and parameters in agreement, and exactly
 * the registered routes with their auth; the docs page renders it without loading anything.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from './harness.js';
import { routeTable } from './route-table.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

let h: Harness;
let doc: Json;
const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'];

beforeAll(async () => {
  h = await startHarness();
  const r = await h.call('GET', '/openapi.json');
  expect(r.status).toBe(200);
  doc = r.body;
});
afterAll(async () => {
  await h?.close();
});

function resolve(ref: string): unknown {
  expect(ref.startsWith('#/'), ref).toBe(true);
  return ref
    .slice(2)
    .split('/')
    .reduce<unknown>((node, part) => (node as Json | undefined)?.[part.replaceAll('~1', '/').replaceAll('~0', '~')], doc);
}

function walk(node: unknown, visit: (n: Json, path: string) => void, path = '#'): void {
  if (Array.isArray(node)) node.forEach((x, i) => walk(x, visit, `${path}/${i}`));
  else if (node !== null && typeof node === 'object') {
    visit(node as Json, path);
    for (const [k, v] of Object.entries(node)) walk(v, visit, `${path}/${k}`);
  }
}

describe('OpenAPI document', () => {
  it('is OpenAPI 3.1 with info, paths and components', () => {
    expect(doc.openapi).toBe('3.1.0');
    expect(typeof doc.info.title).toBe('string');
    expect(doc.info.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(Object.keys(doc.paths).length).toBeGreaterThan(20);
    expect(Object.keys(doc.components.securitySchemes).sort()).toEqual(['adminToken', 'apiKey']);
  });

  it('resolves every $ref and every security requirement', () => {
    const refs: string[] = [];
    walk(doc, (n) => {
      if (typeof n.$ref === 'string') refs.push(n.$ref);
    });
    expect(refs.length).toBeGreaterThan(20);
    for (const ref of refs) expect(resolve(ref), ref).toBeDefined();
    for (const item of Object.values(doc.paths) as Json[]) {
      for (const m of METHODS.filter((x) => item[x])) {
        for (const req of item[m].security ?? []) for (const name of Object.keys(req)) expect(doc.components.securitySchemes[name]).toBeDefined();
      }
    }
  });

  it('has well-formed operations: unique ids, responses with descriptions, path parameters matching the template', () => {
    const ids = new Set<string>();
    for (const [path, item] of Object.entries(doc.paths) as Array<[string, Json]>) {
      expect(path.startsWith('/')).toBe(true);
      const templated = [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();
      for (const m of METHODS.filter((x) => item[x])) {
        const op = item[m];
        const where = `${m.toUpperCase()} ${path}`;
        expect(typeof op.operationId, where).toBe('string');
        expect(ids.has(op.operationId), `duplicate operationId ${op.operationId}`).toBe(false);
        ids.add(op.operationId);
        expect(typeof op.summary, where).toBe('string');
        expect(Object.keys(op.responses).length, where).toBeGreaterThan(0);
        for (const [status, res] of Object.entries(op.responses) as Array<[string, Json]>) {
          expect(status, where).toMatch(/^([1-5]\d\d|[1-5]XX|default)$/);
          expect(typeof (res.$ref ? (resolve(res.$ref) as Json) : res).description, `${where} ${status}`).toBe('string');
        }
        const params = (op.parameters ?? []) as Json[];
        for (const p of params) {
          expect(['path', 'query', 'header', 'cookie']).toContain(p.in);
          expect(p.schema ?? p.content, `${where} ${p.name}`).toBeDefined();
        }
        const inPath = params.filter((p) => p.in === 'path');
        expect(inPath.map((p) => p.name).sort(), where).toEqual(templated);
        for (const p of inPath) expect(p.required, `${where} ${p.name}`).toBe(true);
        if (op.requestBody) expect(Object.keys(op.requestBody.content).length, where).toBeGreaterThan(0);
        // Every error response uses the one error shape.
        for (const [status, res] of Object.entries(op.responses) as Array<[string, Json]>) {
          if (/^[45]/.test(status) && res.content?.['application/json'] && !(path === '/readyz' && status === '503')) {
            expect(res.content['application/json'].schema.$ref, `${where} ${status}`).toBe('#/components/schemas/Error');
          }
        }
      }
    }
  });

  it('lists exactly the registered routes, with their auth and scopes', () => {
    const documented = Object.entries(doc.paths as Record<string, Json>).flatMap(([path, item]) =>
      METHODS.filter((m) => item[m]).map((m) => ({ key: `${m.toUpperCase()} ${path}`, op: item[m] })),
    );
    const routes = routeTable();
    expect(documented.map((d) => d.key).sort()).toEqual(routes.map((r) => `${r.method} ${r.path}`).sort());
    for (const r of routes) {
      const op = documented.find((d) => d.key === `${r.method} ${r.path}`)!.op;
      expect(op['x-dtl-auth']).toBe(r.auth);
      const expected = r.auth === 'admin' ? [{ adminToken: [] }] : r.auth === 'tenant' ? [{ apiKey: [] }] : [];
      expect(op.security).toEqual(expected);
    }
    // The request bodies that are not validated by zod are still documented.
    expect(doc.components.schemas.ClassifyRequest.properties.images.type).toBe('array');
    expect(doc.components.schemas.FanOutRequest.required).toEqual(expect.arrayContaining(['image', 'adapters']));
    expect(doc.components.schemas.Error.properties.error.properties.code.enum).toContain('not_found');
  });
});

describe('docs page', () => {
  it('renders every operation as self-contained HTML', async () => {
    const r = await h.call('GET', '/docs');
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toContain('text/html');
    expect(r.text.startsWith('<!doctype html>')).toBe(true);
    for (const route of routeTable()) {
      expect(r.text).toContain(`<code>${route.path}</code>`);
    }
    expect(r.text).toContain('id="schema-Adapter"');
    // Nothing is fetched from anywhere: no scripts, no external stylesheets or images.
    expect(r.text).not.toMatch(/<script|<link|src=|https?:\/\/(?!127)/i);
  });
});

describe('API conventions in the document and on the wire', () => {
  it('names the server it was fetched from (or PUBLIC_URL)', async () => {
    expect(doc.servers).toEqual([{ url: 'http://localhost' }]);
    const res = await h.app.request('http://api.example.test:8443/openapi.json');
    expect(((await res.json()) as Json).servers).toEqual([{ url: 'http://api.example.test:8443' }]);
  });

  it('documents Idempotency-Key on every creating POST', () => {
    const creating = ['createTenant', 'adminCreateKey', 'createKey', 'uploadDataset', 'trainAdapter', 'trainAdapterVersion', 'importAdapter'];
    const ops = Object.values(doc.paths as Json).flatMap((item) => Object.values(item as Json)) as Json[];
    for (const id of creating) {
      const op = ops.find((o) => o.operationId === id);
      expect(op, id).toBeDefined();
      expect((op!.parameters as Json[]).some((p) => p.in === 'header' && p.name === 'idempotency-key'), id).toBe(true);
      expect(op!.responses['422'], id).toBeDefined();
    }
  });

  it('answers 401 with WWW-Authenticate: Bearer (and invalid_token when one was sent)', async () => {
    const none = await h.call('GET', '/v1/me');
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toBe('Bearer realm="dtl-host"');
    const bad = await h.call('GET', '/v1/me', { token: 'dtl_nope_nope' });
    expect(bad.status).toBe(401);
    expect(bad.headers.get('www-authenticate')).toBe('Bearer realm="dtl-host", error="invalid_token"');
    const admin = await h.call('GET', '/v1/tenants', { token: 'wrong-admin-token-123456' });
    expect(admin.status).toBe(401);
    expect(admin.headers.get('www-authenticate')).toMatch(/^Bearer realm="dtl-host"/);
  });
});
