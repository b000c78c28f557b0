/** Data sets ('train' scope): streamed upload (raw zip/JSONL or multipart), list, get, delete. */
import { z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { AppError, validationError } from '../errors.js';
import { createDataset, deleteDataset, getDataset, listDatasets, type CreateDatasetResult } from '../services/datasets.js';
import { auth, defineRoute, errorResponses, newRouter } from './define.js';
import { keyOf, readPage } from './pagination.js';
import type { AppEnv } from './env.js';
import { CreatedDatasetSchema, DatasetListSchema, DatasetSchema, PageQuery, datasetDto, idParam } from './schemas.js';
import { contentTypeOf, isMultipart, parseMultipart, rawBody } from './uploads.js';

const DatasetParams = z.object({ datasetId: idParam('datasetId', 'Data set id') });
const UploadQuery = z.object({
  name: z.string().max(200).optional().openapi({ description: 'Data set name (required unless a multipart `name` field precedes the file).' }),
  policy: z.enum(['skip', 'reject']).optional().openapi({ description: "skip (default): drop unreadable files and report them; reject: fail on any problem." }),
  minPerClass: z.coerce.number().int().min(1).max(10_000).optional().openapi({ description: 'Images a class needs (default 2).' }),
});
const binary = { type: 'string', format: 'binary' } as const;

export const uploadDatasetRoute = defineRoute(auth.tenant('train'), {
  operationId: 'uploadDataset',
  method: 'post',
  path: '/v1/datasets',
  tags: ['datasets'],
  summary: 'Upload a data set (zip of class folders, zip with labels.csv/labels.jsonl, or JSONL)',
  description:
    'The body is streamed to disk while its bytes are counted (UPLOAD_MAX_BYTES, and the storage quota), then validated and preprocessed before the call returns. ' +
    'Send it raw (application/zip, application/x-ndjson) or as multipart/form-data with one file part. ' +
    'A tenant may have UPLOADS_PER_TENANT uploads in progress at once (beyond: 429 rate_limited with Retry-After).',
  request: {
    query: UploadQuery,
    body: {
      required: true,
      content: {
        'application/zip': { schema: binary },
        'application/x-ndjson': { schema: binary },
        'application/octet-stream': { schema: binary },
        'multipart/form-data': {
          schema: {
            type: 'object',
            required: ['file'],
            properties: { name: { type: 'string' }, policy: { type: 'string', enum: ['skip', 'reject'] }, minPerClass: { type: 'integer' }, file: binary },
          },
        },
      },
    },
  },
  responses: {
    201: { description: 'Stored and ready for training', content: { 'application/json': { schema: CreatedDatasetSchema } } },
    ...errorResponses(400, 413, 415, 422),
  },
}, { idempotent: 'streamed' });

export const listDatasetsRoute = defineRoute(auth.tenant('train'), {
  operationId: 'listDatasets',
  method: 'get',
  path: '/v1/datasets',
  tags: ['datasets'],
  summary: 'List data sets (newest first)',
  request: { query: PageQuery.extend({ status: z.enum(['pending', 'processing', 'ready', 'failed']).optional() }) },
  responses: { 200: { description: 'Data sets', content: { 'application/json': { schema: DatasetListSchema } } }, ...errorResponses(400) },
});

export const getDatasetRoute = defineRoute(auth.tenant('train'), {
  operationId: 'getDataset',
  method: 'get',
  path: '/v1/datasets/{datasetId}',
  tags: ['datasets'],
  summary: 'Get a data set with per-class counts and problems',
  request: { params: DatasetParams },
  responses: { 200: { description: 'The data set', content: { 'application/json': { schema: DatasetSchema } } }, ...errorResponses(404) },
});

export const deleteDatasetRoute = defineRoute(auth.tenant('train'), {
  operationId: 'deleteDataset',
  method: 'delete',
  path: '/v1/datasets/{datasetId}',
  tags: ['datasets'],
  summary: 'Delete a data set and its stored files (adapters trained on it keep working)',
  request: { params: DatasetParams },
  responses: { 204: { description: 'Deleted' }, ...errorResponses(404) },
});

type UploadQueryT = z.infer<typeof UploadQuery>;

function pick(fields: Record<string, string>, keys: string[]): Record<string, string> {
  return Object.fromEntries(keys.filter((k) => fields[k] !== undefined).map((k) => [k, fields[k]]));
}

async function upload(c: Context<AppEnv>, query: UploadQueryT): Promise<CreateDatasetResult> {
  const deps = c.get('deps');
  const ctx = c.get('principal');
  const signal = c.req.raw.signal;
  if (!isMultipart(c)) {
    if (query.name === undefined) throw new AppError('validation_failed', 'name: required (query parameter)');
    return createDataset({
      deps,
      ctx,
      input: { name: query.name, source: rawBody(c), contentType: contentTypeOf(c) || undefined, policy: query.policy, minPerClass: query.minPerClass, signal },
    });
  }
  let result: CreateDatasetResult | undefined;
  const undo = async () => {
    if (result !== undefined) await deleteDataset({ deps, ctx, id: result.dataset.id }).catch(() => {});
  };
  await parseMultipart(c, {
    maxFiles: 1,
    onFile: async (part, fields, failed) => {
      // Fields before the file override the query; both pass the same checks.
      const parsed = UploadQuery.safeParse({ ...query, ...pick(fields, ['name', 'policy', 'minPerClass']) });
      if (!parsed.success) throw validationError(parsed.error);
      const { name, policy, minPerClass } = parsed.data;
      if (name === undefined) throw new AppError('validation_failed', "name: required (query parameter, or a 'name' field before the file)");
      result = await createDataset({
        deps,
        ctx,
        input: { name, source: part.stream, contentType: part.mimeType, policy, minPerClass, signal: AbortSignal.any([signal, failed]) },
      });
      // The rest of the body turned out bad (e.g. a second file) after this one was stored.
      if (failed.aborted) await undo();
    },
  }).catch(async (err: unknown) => {
    await undo();
    throw err;
  });
  if (result === undefined) throw new AppError('validation_failed', 'the multipart body has no file part');
  return result;
}

export function datasetsRouter() {
  const app = newRouter();
  app.openapi(uploadDatasetRoute, async (c) => {
    // Held until the data set is stored or refused: an upload ties up a connection, disk and CPU.
    const release = c.get('deps').uploads.acquire(c.get('principal').tenantId);
    const created = await upload(c, c.req.valid('query')).finally(release);
    return c.json({ ...datasetDto(created.dataset), form: created.form, problemCount: created.problemCount }, 201);
  });
  app.openapi(listDatasetsRoute, async (c) => {
    const q = c.req.valid('query');
    const [deps, ctx] = [c.get('deps'), c.get('principal')];
    return c.json(await readPage(c, q, (page) => listDatasets({ deps, ctx, page: { ...page, status: q.status } }), keyOf, datasetDto), 200);
  });
  app.openapi(getDatasetRoute, async (c) =>
    c.json(datasetDto(await getDataset({ deps: c.get('deps'), ctx: c.get('principal'), id: c.req.valid('param').datasetId })), 200),
  );
  app.openapi(deleteDatasetRoute, async (c) => {
    await deleteDataset({ deps: c.get('deps'), ctx: c.get('principal'), id: c.req.valid('param').datasetId });
    return c.body(null, 204);
  });
  return app;
}
