/**
 * Adapters: train (create, or a new version), list, get with status and metrics, versions,
 * aliases, delete, download a version's safetensors file, import one trained elsewhere.
 * Reads take 'classify' or 'train'; everything that changes or exports an adapter takes 'train'.
 */
import { Readable } from 'node:stream';
import { z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { AppError } from '../errors.js';
import {
  ADAPTER_FILE_MAX_BYTES,
  deleteAdapter,
  deleteAlias,
  downloadVersion,
  getAdapter,
  getVersion,
  importAdapter,
  listAdapters,
  listVersions,
  setAlias,
} from '../services/adapters.js';
import { startTraining } from '../services/training.js';
import { MAX_VERSION } from '../services/version-resolver.js';
import { auth, defineRoute, errorResponses, newRouter } from './define.js';
import { readPage } from './pagination.js';
import type { AppEnv } from './env.js';
import {
  AdapterListSchema,
  AdapterSchema,
  AdapterVersionListSchema,
  AdapterVersionSchema,
  AliasSchema,
  JobSchema,
  PageQuery,
  adapterDto,
  idParam,
  jobDto,
  versionDto,
} from './schemas.js';
import { isMultipart, parseMultipart, rawBody, readAll } from './uploads.js';

const AdapterParams = z.object({ adapterId: idParam('adapterId', 'Adapter id or name') });
const VersionParams = AdapterParams.extend({
  version: z.string().max(64).openapi({ param: { name: 'version', in: 'path' }, description: "Version number or alias (e.g. 'latest')", example: 'latest' }),
});
const AliasParams = AdapterParams.extend({
  alias: z.string().max(64).openapi({ param: { name: 'alias', in: 'path' }, description: 'Alias name', example: 'prod' }),
});

const Hyperparameters = z
  .record(z.string(), z.unknown())
  .optional()
  .openapi({
    description:
      "Training hyperparameters (epochs, lr, rank, variant dtl|dtl+, budget fast|balanced|best, …); anything left out takes the recipe default. lr and variant default to 'auto': the job searches them on the validation split (job events 'search'; the version's metrics.search).",
  });

const Webhook = z
  .object({ url: z.string().max(2048), secret: z.string().min(16).max(256) })
  .optional()
  .openapi('Webhook', {
    description:
      'Called once when the job ends (succeeded, failed or cancelled): POST {type: "job.finished", timestamp, data: {job}} to `url`, signed as Standard Webhooks sign — ' +
      'headers webhook-id, webhook-timestamp and webhook-signature "v1,<base64 HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{body}` with `secret`>". ' +
      'Any non-2xx answer or no answer in 10 s is retried with backoff (8 attempts, about 10 minutes); the attempts are listed at GET /v1/jobs/{jobId}/webhook-deliveries.',
  });

const TrainBody = z
  .object({
    datasetId: z.string().max(200),
    name: z.string().max(100).openapi({ description: 'Adapter name; a new version is trained when the tenant already has one by this name.' }),
    description: z.string().max(2000).refine((s) => !s.includes('\0'), 'must not contain NUL').optional(),
    hyperparameters: Hyperparameters,
    webhook: Webhook,
  })
  .openapi('TrainAdapter');
const RetrainBody = z.object({ datasetId: z.string().max(200), hyperparameters: Hyperparameters, webhook: Webhook }).openapi('TrainVersion');
const TrainingStartedSchema = z
  .object({ adapter: AdapterSchema, job: JobSchema })
  .openapi('TrainingStarted', { description: "The version appears when the job succeeds (job.result.version; 'latest' moves to it)." });
const ImportedSchema = z.object({ adapter: AdapterSchema, version: AdapterVersionSchema, created: z.boolean() }).openapi('ImportedAdapter');
const json = <T extends z.ZodType>(schema: T) => ({ required: true, content: { 'application/json': { schema } } });
const binary = { type: 'string', format: 'binary' } as const;
const readers = auth.tenant('classify', 'train');
const writers = auth.tenant('train');

export const trainAdapterRoute = defineRoute(writers, {
  operationId: 'trainAdapter',
  method: 'post',
  path: '/v1/adapters',
  tags: ['adapters'],
  summary: 'Train an adapter from a data set (creates it, or a new version of the one with this name)',
  request: { body: json(TrainBody) },
  responses: { 202: { description: 'Training queued', content: { 'application/json': { schema: TrainingStartedSchema } } }, ...errorResponses(400, 404, 409) },
}, { idempotent: 'json' });

export const listAdaptersRoute = defineRoute(readers, {
  operationId: 'listAdapters',
  method: 'get',
  path: '/v1/adapters',
  tags: ['adapters'],
  summary: 'List adapters (oldest first) with status and latest version',
  request: { query: PageQuery },
  responses: { 200: { description: 'Adapters', content: { 'application/json': { schema: AdapterListSchema } } }, ...errorResponses(400) },
});

export const getAdapterRoute = defineRoute(readers, {
  operationId: 'getAdapter',
  method: 'get',
  path: '/v1/adapters/{adapterId}',
  tags: ['adapters'],
  summary: 'Get an adapter: status, latest version with metrics, aliases, last job',
  request: { params: AdapterParams },
  responses: { 200: { description: 'The adapter', content: { 'application/json': { schema: AdapterSchema } } }, ...errorResponses(404) },
});

export const deleteAdapterRoute = defineRoute(writers, {
  operationId: 'deleteAdapter',
  method: 'delete',
  path: '/v1/adapters/{adapterId}',
  tags: ['adapters'],
  summary: 'Delete an adapter with all its versions (its running jobs are cancelled)',
  request: { params: AdapterParams },
  responses: { 204: { description: 'Deleted' }, ...errorResponses(404) },
});

export const retrainAdapterRoute = defineRoute(writers, {
  operationId: 'trainAdapterVersion',
  method: 'post',
  path: '/v1/adapters/{adapterId}/train',
  tags: ['adapters'],
  summary: 'Train a new version of this adapter',
  request: { params: AdapterParams, body: json(RetrainBody) },
  responses: { 202: { description: 'Training queued', content: { 'application/json': { schema: TrainingStartedSchema } } }, ...errorResponses(400, 404, 409) },
}, { idempotent: 'json' });

export const listVersionsRoute = defineRoute(readers, {
  operationId: 'listAdapterVersions',
  method: 'get',
  path: '/v1/adapters/{adapterId}/versions',
  tags: ['adapters'],
  summary: 'List the versions of an adapter (oldest first)',
  request: { params: AdapterParams },
  responses: { 200: { description: 'Versions', content: { 'application/json': { schema: AdapterVersionListSchema } } }, ...errorResponses(404) },
});

export const getVersionRoute = defineRoute(readers, {
  operationId: 'getAdapterVersion',
  method: 'get',
  path: '/v1/adapters/{adapterId}/versions/{version}',
  tags: ['adapters'],
  summary: 'Get one version (by number or alias) with its metrics',
  request: { params: VersionParams },
  responses: { 200: { description: 'The version', content: { 'application/json': { schema: AdapterVersionSchema } } }, ...errorResponses(404) },
});

export const downloadVersionRoute = defineRoute(writers, {
  operationId: 'downloadAdapterVersion',
  method: 'get',
  path: '/v1/adapters/{adapterId}/versions/{version}/file',
  tags: ['adapters'],
  summary: "Download a version's safetensors file (the authors' PyTorch layout, spec in the metadata)",
  request: { params: VersionParams },
  responses: { 200: { description: 'The file', content: { 'application/octet-stream': { schema: binary } } }, ...errorResponses(404) },
});

export const setAliasRoute = defineRoute(writers, {
  operationId: 'setAdapterAlias',
  method: 'put',
  path: '/v1/adapters/{adapterId}/aliases/{alias}',
  tags: ['adapters'],
  summary: 'Point an alias (e.g. prod, latest) at a version',
  request: { params: AliasParams, body: json(z.object({ version: z.number().int().min(1).max(MAX_VERSION) }).openapi('SetAlias')) },
  responses: { 200: { description: 'The alias', content: { 'application/json': { schema: AliasSchema } } }, ...errorResponses(400, 404) },
});

export const deleteAliasRoute = defineRoute(writers, {
  operationId: 'deleteAdapterAlias',
  method: 'delete',
  path: '/v1/adapters/{adapterId}/aliases/{alias}',
  tags: ['adapters'],
  summary: 'Remove an alias',
  request: { params: AliasParams },
  responses: { 204: { description: 'Removed' }, ...errorResponses(404) },
});

export const importAdapterRoute = defineRoute(writers, {
  operationId: 'importAdapter',
  method: 'post',
  path: '/v1/adapters/import',
  tags: ['adapters'],
  summary: 'Import a safetensors adapter trained elsewhere (validated against this backbone)',
  description:
    "The file is the authors' PyTorch state-dict layout with the spec under `__metadata__.dtl`. It becomes the next version of the adapter " +
    "named `name` (created when absent) and 'latest' moves to it. Raw body (application/octet-stream) or multipart with one file part.",
  request: {
    query: z.object({
      name: z.string().max(100).optional().openapi({ description: 'Adapter name (or a multipart `name` field before the file).' }),
      description: z.string().max(2000).refine((s) => !s.includes('\0'), 'must not contain NUL').optional(),
    }),
    body: {
      required: true,
      content: {
        'application/octet-stream': { schema: binary },
        'multipart/form-data': { schema: { type: 'object', required: ['file'], properties: { name: { type: 'string' }, description: { type: 'string' }, file: binary } } },
      },
    },
  },
  responses: {
    201: { description: 'Imported', content: { 'application/json': { schema: ImportedSchema } } },
    ...errorResponses(400, 413, 415),
  },
}, { idempotent: 'streamed' });

async function importBody(c: Context<AppEnv>, query: { name?: string; description?: string }) {
  const deps = c.get('deps');
  const ctx = c.get('principal');
  if (!isMultipart(c)) {
    if (query.name === undefined) throw new AppError('validation_failed', 'name: required (query parameter)');
    return importAdapter({ deps, ctx, input: { name: query.name, description: query.description, source: rawBody(c) } });
  }
  // Adapter files are small: read the part, and import only once the whole body proved sound.
  let file: { bytes: Buffer; fields: Record<string, string> } | undefined;
  await parseMultipart(c, {
    maxFiles: 1,
    onFile: async (part, fields) => {
      file = { bytes: await readAll(part.stream, Math.min(deps.config.UPLOAD_MAX_BYTES, ADAPTER_FILE_MAX_BYTES), 'the adapter file'), fields };
    },
  });
  if (file === undefined) throw new AppError('validation_failed', 'the multipart body has no file part');
  const name = file.fields.name ?? query.name;
  if (name === undefined) throw new AppError('validation_failed', "name: required (query parameter, or a 'name' field before the file)");
  return importAdapter({ deps, ctx, input: { name, description: file.fields.description ?? query.description, source: [file.bytes] } });
}

export function adaptersRouter() {
  const app = newRouter();
  const view = async (c: Context<AppEnv>, ref: string) => adapterDto(await getAdapter({ deps: c.get('deps'), ctx: c.get('principal'), ref }));

  app.openapi(trainAdapterRoute, async (c) => {
    const body = c.req.valid('json');
    const { adapter, job } = await startTraining({
      deps: c.get('deps'),
      ctx: c.get('principal'),
      input: { datasetId: body.datasetId, adapterName: body.name, description: body.description, hyperparameters: body.hyperparameters, webhook: body.webhook },
    });
    return c.json({ adapter: await view(c, adapter.id), job: jobDto(job) }, 202);
  });
  app.openapi(retrainAdapterRoute, async (c) => {
    const deps = c.get('deps');
    const ctx = c.get('principal');
    const current = await getAdapter({ deps, ctx, ref: c.req.valid('param').adapterId });
    const body = c.req.valid('json');
    const { adapter, job } = await startTraining({
      deps,
      ctx,
      input: { datasetId: body.datasetId, adapterName: current.adapter.name, hyperparameters: body.hyperparameters, webhook: body.webhook },
    });
    return c.json({ adapter: await view(c, adapter.id), job: jobDto(job) }, 202);
  });
  app.openapi(listAdaptersRoute, async (c) => {
    const [deps, ctx] = [c.get('deps'), c.get('principal')];
    const keyOf = (v: { adapter: { createdAt: Date; id: string } }) => ({ at: v.adapter.createdAt, id: v.adapter.id });
    return c.json(await readPage(c, c.req.valid('query'), (page) => listAdapters({ deps, ctx, page }), keyOf, adapterDto), 200);
  });
  app.openapi(getAdapterRoute, async (c) => c.json(await view(c, c.req.valid('param').adapterId), 200));
  app.openapi(deleteAdapterRoute, async (c) => {
    await deleteAdapter({ deps: c.get('deps'), ctx: c.get('principal'), ref: c.req.valid('param').adapterId });
    return c.body(null, 204);
  });
  app.openapi(listVersionsRoute, async (c) => {
    const { versions } = await listVersions({ deps: c.get('deps'), ctx: c.get('principal'), ref: c.req.valid('param').adapterId });
    return c.json({ items: versions.map(versionDto) }, 200);
  });
  app.openapi(getVersionRoute, async (c) => {
    const { adapterId, version } = c.req.valid('param');
    const found = await getVersion({ deps: c.get('deps'), ctx: c.get('principal'), ref: adapterId, version });
    return c.json(versionDto(found.version), 200);
  });
  app.openapi(downloadVersionRoute, async (c) => {
    const { adapterId, version } = c.req.valid('param');
    const file = await downloadVersion({ deps: c.get('deps'), ctx: c.get('principal'), ref: adapterId, version });
    const body = Readable.toWeb(file.stream) as unknown as ReadableStream<Uint8Array>;
    return c.body(body, 200, {
      'content-type': 'application/octet-stream',
      'content-length': String(file.size),
      'content-disposition': `attachment; filename="${file.filename.replace(/[^A-Za-z0-9._-]/g, '_')}"`,
      'x-adapter-version': String(file.version.version),
    });
  });
  app.openapi(setAliasRoute, async (c) => {
    const { adapterId, alias } = c.req.valid('param');
    const out = await setAlias({ deps: c.get('deps'), ctx: c.get('principal'), ref: adapterId, alias, version: c.req.valid('json').version });
    return c.json(out, 200);
  });
  app.openapi(deleteAliasRoute, async (c) => {
    const { adapterId, alias } = c.req.valid('param');
    await deleteAlias({ deps: c.get('deps'), ctx: c.get('principal'), ref: adapterId, alias });
    return c.body(null, 204);
  });
  app.openapi(importAdapterRoute, async (c) => {
    const out = await importBody(c, c.req.valid('query'));
    return c.json({ adapter: await view(c, out.adapter.id), version: versionDto(out.version), created: out.created }, 201);
  });
  return app;
}
