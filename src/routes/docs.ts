/** /openapi.json and /docs: built once, on first request, from every route registered by then. */
import { z } from '@hono/zod-openapi';
import { auth, defineRoute, newRouter } from './define.js';
import { publicBase } from './links.js';
import { renderDocsHtml, type OpenApiDocument } from './openapi.js';

export const openApiRoute = defineRoute(auth.public, {
  operationId: 'openapi',
  method: 'get',
  path: '/openapi.json',
  tags: ['docs'],
  summary: 'This API as an OpenAPI 3.1 document',
  responses: { 200: { description: 'OpenAPI 3.1', content: { 'application/json': { schema: z.record(z.string(), z.unknown()) } } } },
});

export const docsRoute = defineRoute(auth.public, {
  operationId: 'docs',
  method: 'get',
  path: '/docs',
  tags: ['docs'],
  summary: 'This API as a readable page',
  responses: { 200: { description: 'HTML', content: { 'text/html': { schema: z.string() } } } },
});

export function docsRouter(document: () => OpenApiDocument) {
  const app = newRouter();
  let html: string | undefined;
  // `servers` names where this document was fetched from (or PUBLIC_URL), so clients and
  // generators built from it call the right host.
  app.openapi(openApiRoute, (c) => c.json({ ...(document() as unknown as Record<string, unknown>), servers: [{ url: publicBase(c) }] }, 200));
  app.openapi(docsRoute, (c) => c.html((html ??= renderDocsHtml(document())), 200));
  return app;
}
