/**
 * The registered routes as data, read from the app's OpenAPI registry: what the isolation and
 * OpenAPI suites iterate, so a new route is covered without anyone listing it.
 */
import { buildApp, type AppDeps } from '../../src/app.js';

export interface RouteEntry {
  operationId: string;
  method: string;
  /** OpenAPI form: /v1/adapters/{adapterId} */
  path: string;
  auth: 'public' | 'admin' | 'tenant';
  scopes: string[];
  pathParams: string[];
  hasBody: boolean;
}

/** The route table of a real app; building one needs no database (deps are only read per request). */
export function routeTable(): RouteEntry[] {
  const app = buildApp({} as AppDeps);
  const out: RouteEntry[] = [];
  for (const def of app.openAPIRegistry.definitions) {
    if (def.type !== 'route') continue;
    const r = def.route as typeof def.route & { 'x-dtl-auth'?: RouteEntry['auth']; 'x-dtl-scopes'?: string[] };
    out.push({
      operationId: r.operationId ?? `${r.method} ${r.path}`,
      method: r.method.toUpperCase(),
      path: r.path,
      auth: r['x-dtl-auth'] ?? ('undeclared' as RouteEntry['auth']),
      scopes: [...(r['x-dtl-scopes'] ?? [])],
      pathParams: [...r.path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]),
      hasBody: r.request?.body !== undefined,
    });
  }
  return out;
}

export function fillPath(path: string, values: Record<string, string>): string {
  return path.replace(/\{(\w+)\}/g, (_, name: string) => {
    const v = values[name];
    if (v === undefined) throw new Error(`no value for path parameter '${name}' of ${path}`);
    return encodeURIComponent(v);
  });
}
