/**
 * The OpenAPI 3.1 document (built from the registered routes, so it cannot drift from them) and a
 * docs page rendered from it on the server: plain HTML and CSS, no scripts, nothing fetched from
 * the internet — it works on an air-gapped install.
 */
import type { OpenAPIHono } from '@hono/zod-openapi';
import type { AppEnv } from './env.js';

export type OpenApiDocument = ReturnType<OpenAPIHono['getOpenAPI31Document']>;

const DESCRIPTION = `Multi-tenant adapter host for image classification with DTL (Disentangled Transfer Learning).

Authentication: \`Authorization: Bearer <token>\`. Tenant administration takes the admin token
(\`ADMIN_TOKEN\`); everything under /v1 else takes a tenant API key (\`dtl_<prefix>_<secret>\`) with
the scope the operation lists. The tenant is always the key's own: another tenant's object is a 404,
exactly like a missing one. Errors have one shape: \`{"error": {"code", "message", "requestId", "details"?}}\`.`;

export function registerSecuritySchemes(app: OpenAPIHono<AppEnv>): void {
  app.openAPIRegistry.registerComponent('securitySchemes', 'apiKey', {
    type: 'http',
    scheme: 'bearer',
    description: 'A tenant API key, `dtl_<prefix>_<secret>`.',
  });
  app.openAPIRegistry.registerComponent('securitySchemes', 'adminToken', {
    type: 'http',
    scheme: 'bearer',
    description: 'The ADMIN_TOKEN of the deployment.',
  });
}

export function buildOpenApiDocument(app: OpenAPIHono<AppEnv>, version: string): OpenApiDocument {
  return app.getOpenAPI31Document({
    openapi: '3.1.0',
    info: { title: 'dtl-host API', version, description: DESCRIPTION },
    // /openapi.json replaces this with the absolute URL it was fetched from (or PUBLIC_URL).
    servers: [{ url: '/', description: 'The server that serves this document' }],
    tags: [
      { name: 'tenants', description: 'Tenant administration (admin token).' },
      { name: 'keys', description: "A tenant's API keys." },
      { name: 'datasets', description: 'Training data sets.' },
      { name: 'adapters', description: 'Adapters: training, versions, aliases, download and import.' },
      { name: 'jobs', description: 'Training jobs and their progress.' },
      { name: 'classify', description: 'Classification with one adapter or several.' },
      { name: 'health', description: 'Probes and metrics.' },
      { name: 'docs', description: 'This document.' },
    ],
  });
}

const esc = (s: unknown) =>
  String(s).replace(/[&<>"']/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[ch] ?? ch);

type Json = Record<string, unknown>;

function schemaHtml(schema: unknown): string {
  if (schema === undefined) return '';
  return `<pre>${esc(JSON.stringify(schema, null, 2))}</pre>`;
}

function refName(schema: unknown): string | undefined {
  const ref = (schema as { $ref?: string } | undefined)?.$ref;
  return ref?.split('/').pop();
}

function contentHtml(content: Json | undefined): string {
  if (content === undefined) return '';
  return Object.entries(content)
    .map(([type, media]) => {
      const schema = (media as Json).schema;
      const name = refName(schema);
      return `<div class="media"><code>${esc(type)}</code> ${name ? `<a href="#schema-${esc(name)}">${esc(name)}</a>` : schemaHtml(schema)}</div>`;
    })
    .join('');
}

/** A readable HTML rendering of the document: operations by tag, then every component schema. */
export function renderDocsHtml(doc: OpenApiDocument): string {
  const ops: Array<{ tag: string; method: string; path: string; op: Json }> = [];
  for (const [path, item] of Object.entries(doc.paths ?? {})) {
    for (const [method, op] of Object.entries(item as Json)) {
      if (!['get', 'post', 'put', 'patch', 'delete'].includes(method)) continue;
      const o = op as Json;
      ops.push({ tag: ((o.tags as string[] | undefined) ?? ['other'])[0], method, path, op: o });
    }
  }
  const tags = (doc.tags ?? []).map((t) => t.name).filter((t) => ops.some((o) => o.tag === t));
  const sections = tags.map((tag) => {
    const rows = ops
      .filter((o) => o.tag === tag)
      .map(({ method, path, op }) => {
        const scopes = (op['x-dtl-scopes'] as string[] | undefined) ?? [];
        const authKind = op['x-dtl-auth'] as string | undefined;
        const authText = authKind === 'admin' ? 'admin token' : authKind === 'tenant' ? `API key${scopes.length ? ` (scope: ${scopes.join(' or ')})` : ''}` : 'none';
        const params = ((op.parameters as Json[] | undefined) ?? [])
          .map((p) => `<li><code>${esc(p.name)}</code> <em>${esc(p.in)}</em>${p.required ? ' required' : ''}${p.description ? ` — ${esc(p.description)}` : ''}</li>`)
          .join('');
        const body = op.requestBody as Json | undefined;
        const responses = Object.entries((op.responses as Json | undefined) ?? {})
          .map(([status, r]) => `<li><strong>${esc(status)}</strong> ${esc((r as Json).description ?? '')}${contentHtml((r as Json).content as Json | undefined)}</li>`)
          .join('');
        return `<section class="op" id="op-${esc(op.operationId ?? `${method}-${path}`)}">
<h3><span class="m m-${esc(method)}">${esc(method.toUpperCase())}</span> <code>${esc(path)}</code></h3>
<p class="summary">${esc(op.summary ?? '')}</p>${op.description ? `<p>${esc(op.description)}</p>` : ''}
<p class="auth">Auth: ${esc(authText)}</p>
${params ? `<h4>Parameters</h4><ul>${params}</ul>` : ''}
${body ? `<h4>Request body</h4>${contentHtml(body.content as Json | undefined)}` : ''}
<h4>Responses</h4><ul>${responses}</ul></section>`;
      })
      .join('\n');
    return `<h2 id="tag-${esc(tag)}">${esc(tag)}</h2>\n${rows}`;
  });
  const schemas = Object.entries((doc.components?.schemas ?? {}) as Json)
    .map(([name, s]) => `<section id="schema-${esc(name)}"><h3>${esc(name)}</h3>${schemaHtml(s)}</section>`)
    .join('\n');
  const nav = tags.map((t) => `<a href="#tag-${esc(t)}">${esc(t)}</a>`).join(' · ');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(doc.info.title)} ${esc(doc.info.version)}</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;margin:0 auto;max-width:960px;padding:1rem 2rem;color:#1d1d1f}
code,pre{font:13px ui-monospace,monospace}pre{background:#f5f5f7;padding:.75rem;overflow:auto;border-radius:4px}
.op{border-top:1px solid #ddd;padding:.5rem 0}.m{display:inline-block;min-width:4.5em;text-align:center;border-radius:3px;color:#fff;font-size:12px;padding:2px 4px}
.m-get{background:#2b7bb9}.m-post{background:#2e8b57}.m-put{background:#b8860b}.m-patch{background:#8a6d3b}.m-delete{background:#b22222}
.summary{font-weight:600}.auth{color:#555}h4{margin:.5rem 0 .25rem}
</style></head><body>
<h1>${esc(doc.info.title)} <small>${esc(doc.info.version)}</small></h1>
<p>${esc(doc.info.description ?? '')}</p>
<p>Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI ${esc(doc.openapi)}).</p>
<nav>${nav} · <a href="#schemas">schemas</a></nav>
${sections.join('\n')}
<h2 id="schemas">Schemas</h2>
${schemas}
</body></html>`;
}
