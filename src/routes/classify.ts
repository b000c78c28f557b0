/**
 * Classification ('classify' scope): several images through one adapter, or one image through
 * several adapters (fan-out: the shared backbone prefix runs once). Images come as multipart file
 * parts or base64 strings in JSON; either way the body is read with its bytes counted against
 * CLASSIFY_MAX_BYTES, and nothing is queued until every image decoded.
 */
import { z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { AppError, validationError } from '../errors.js';
import { ACCEPTED_IMAGE_FORMATS, ImageTextError, decodeImageText } from '../model/index.js';
import { MAX_FANOUT_ADAPTERS, MAX_IMAGES_PER_REQUEST, adapterRefSchema, answerFields, classify, versionFields, classifyFanOut, type ClassifyAnswer } from '../services/classify.js';
import { auth, defineRoute, errorResponses, newRouter } from './define.js';
import type { AppEnv } from './env.js';
import { idParam, uuid } from './schemas.js';
import { isJson, isMultipart, parseMultipart, readAll, readBody } from './uploads.js';

const base64Image = z
  .string()
  .min(1)
  .openapi({ description: `An image (${ACCEPTED_IMAGE_FORMATS}, by content) as base64, or a base64 data: URL declaring an image type (data:image/png;base64,…).`, format: 'byte' });
const versionSelector = {
  version: versionFields.version.openapi({ description: 'Pin a version number.' }),
  alias: versionFields.alias.openapi({ description: "An alias (default 'latest')." }),
};
const answerOptions = {
  topK: answerFields.topK.openapi({ description: 'Labels per answer, most probable first (default 5).' }),
  threshold: answerFields.threshold.openapi({ description: "Drop labels below this probability (calibrated: softmax of logits / the adapter's temperature fitted on validation)." }),
};

export const ClassifyJson = z
  .object({ images: z.array(base64Image).min(1).max(MAX_IMAGES_PER_REQUEST), ...versionSelector, ...answerOptions })
  .strict()
  .openapi('ClassifyRequest');

const AdapterSelector = z.union([adapterRefSchema, z.object({ adapter: adapterRefSchema, ...versionSelector }).strict()]);
export const FanOutJson = z
  .object({ image: base64Image, adapters: z.array(AdapterSelector).min(1).max(MAX_FANOUT_ADAPTERS), ...answerOptions })
  .strict()
  .openapi('FanOutRequest', { description: 'adapters: ids or names, or {adapter, version | alias} objects.' });

const AnswerSchema = z
  .object({
    adapter: z.object({ adapterId: uuid, adapterName: z.string(), versionId: uuid, version: z.number().int() }),
    predictions: z.array(z.object({ label: z.string(), probability: z.number() })),
    timings: z.object({
      resolveMs: z.number(),
      preprocessMs: z.number(),
      queueMs: z.number(),
      loadMs: z.number(),
      prefixMs: z.number(),
      adapterMs: z.number(),
      totalMs: z.number(),
    }),
  })
  .openapi('ClassifyAnswer');
const ClassifyResponse = z.object({ results: z.array(AnswerSchema) }).openapi('ClassifyResponse', { description: 'One answer per image (classify) or per adapter (fan-out), in request order.' });

const binary = { type: 'string', format: 'binary' } as const;
const queryText = (description: string) => z.string().max(64).optional().openapi({ description });
/** Options of a raw image body (which has nowhere else to carry them); ignored with JSON and multipart. */
const RawImageQuery = z.object({
  version: queryText('With a raw image body: pin a version number.'),
  alias: queryText("With a raw image body: an alias (default 'latest')."),
  topK: queryText('With a raw image body: labels per answer (default 5).'),
  threshold: queryText('With a raw image body: drop labels below this probability.'),
});
const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const classifyErrors = errorResponses(400, 404, 413, 415);

export const classifyRoute = defineRoute(auth.tenant('classify'), {
  operationId: 'classify',
  method: 'post',
  path: '/v1/adapters/{adapterId}/classify',
  tags: ['classify'],
  summary: 'Classify images with one adapter (id or name; pinned version or alias)',
  description:
    `Up to ${MAX_IMAGES_PER_REQUEST} images: JSON with base64 images, or multipart/form-data with one file part per image (and optional version, alias, topK, threshold fields), ` +
    'or one image as the raw body (Content-Type image/png, image/jpeg, …; version, alias, topK and threshold then go in the query string).',
  request: {
    params: z.object({ adapterId: idParam('adapterId', 'Adapter id or name') }),
    query: RawImageQuery,
    body: {
      required: true,
      content: {
        'image/*': { schema: binary },
        'application/json': { schema: ref('ClassifyRequest') },
        'multipart/form-data': {
          schema: {
            type: 'object',
            properties: { images: { type: 'array', items: binary }, version: { type: 'string' }, alias: { type: 'string' }, topK: { type: 'integer' }, threshold: { type: 'number' } },
          },
        },
      },
    },
  },
  responses: { 200: { description: 'One answer per image', content: { 'application/json': { schema: ClassifyResponse } } }, ...classifyErrors },
});

export const fanOutRoute = defineRoute(auth.tenant('classify'), {
  operationId: 'classifyFanOut',
  method: 'post',
  path: '/v1/classify/fan-out',
  tags: ['classify'],
  summary: 'Classify one image with several adapters at once',
  description: `Up to ${MAX_FANOUT_ADAPTERS} adapters. JSON with a base64 image, or multipart/form-data with one file part and an \`adapters\` field (JSON array, or comma-separated ids/names).`,
  request: {
    body: {
      required: true,
      content: {
        'application/json': { schema: ref('FanOutRequest') },
        'multipart/form-data': {
          schema: { type: 'object', required: ['image', 'adapters'], properties: { image: binary, adapters: { type: 'string' }, topK: { type: 'integer' }, threshold: { type: 'number' } } },
        },
      },
    },
  },
  responses: { 200: { description: 'One answer per adapter', content: { 'application/json': { schema: ClassifyResponse } } }, ...classifyErrors },
});

function decodeImage(text: string, where: string): Buffer {
  try {
    return decodeImageText(text);
  } catch (err) {
    if (!(err instanceof ImageTextError)) throw err;
    // A declared non-image type is a wrong image, like bytes that are none; bad base64 a malformed field.
    throw new AppError(err.reason === 'media_type' ? 'invalid_image' : 'validation_failed', `${where}: ${err.reason === 'encoding' ? 'not a base64 image: ' : ''}${err.message}`);
  }
}

async function readJson<S extends z.ZodType>(c: Context<AppEnv>, schema: S, maxBytes: number): Promise<z.output<S>> {
  const bytes = await readBody(c, maxBytes, 'the request body');
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new AppError('bad_request', 'the body is not valid JSON');
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw validationError(parsed.error);
  return parsed.data;
}

/** Reads every file part into memory, the total capped at `maxBytes`. */
async function readForm(c: Context<AppEnv>, maxFiles: number, maxBytes: number): Promise<{ files: Buffer[]; fields: Record<string, string> }> {
  const files: Buffer[] = [];
  let total = 0;
  const fields = await parseMultipart(c, {
    maxFiles,
    onFile: async (part) => {
      const data = await readAll(part.stream, maxBytes - total, 'the request body');
      total += data.length;
      files.push(data);
    },
  });
  return { files, fields };
}

const num = (v: string | undefined, what: string): number | undefined => {
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new AppError('validation_failed', `${what}: a number`);
  return n;
};

function unsupported(c: Context<AppEnv>, also = ''): AppError {
  return new AppError('unsupported_media_type', `send ${also}application/json or multipart/form-data, not '${c.req.header('content-type') ?? 'nothing'}'`);
}

/** A raw image body: the declared type only routes it; its bytes decide the format (and refuse a lie). */
function isImage(c: Context<AppEnv>): boolean {
  return /^image\/[a-z0-9.+-]+\s*(;|$)/i.test(c.req.header('content-type') ?? '');
}

function answerDto(a: ClassifyAnswer) {
  return { adapter: a.adapter, predictions: a.predictions, timings: a.timings };
}

export function classifyRouter() {
  const app = newRouter();
  app.openAPIRegistry.register('ClassifyRequest', ClassifyJson);
  app.openAPIRegistry.register('FanOutRequest', FanOutJson);

  app.openapi(classifyRoute, async (c) => {
    const deps = c.get('deps');
    const max = deps.config.CLASSIFY_MAX_BYTES;
    let input;
    if (isJson(c)) {
      const body = await readJson(c, ClassifyJson, max);
      input = { ...body, images: body.images.map((s, i) => decodeImage(s, `images.${i}`)) };
    } else if (isMultipart(c)) {
      const { files, fields } = await readForm(c, MAX_IMAGES_PER_REQUEST, max);
      if (files.length === 0) throw new AppError('validation_failed', 'images: at least one file part');
      input = { images: files, version: fields.version, alias: fields.alias, topK: num(fields.topK, 'topK'), threshold: num(fields.threshold, 'threshold') };
    } else if (isImage(c)) {
      const q = c.req.valid('query');
      input = { images: [await readBody(c, max, 'the request body')], version: q.version, alias: q.alias, topK: num(q.topK, 'topK'), threshold: num(q.threshold, 'threshold') };
    } else {
      throw unsupported(c, 'an image/* body, ');
    }
    const principal = c.get('principal');
    const { results } = await classify({ deps, engine: deps.engine, ctx: principal, input: { ...input, adapter: c.req.valid('param').adapterId } });
    deps.metrics.countImages(principal.tenantId, results.length);
    return c.json({ results: results.map(answerDto) }, 200);
  });

  app.openapi(fanOutRoute, async (c) => {
    const deps = c.get('deps');
    const max = deps.config.CLASSIFY_MAX_BYTES;
    let input;
    if (isJson(c)) {
      const body = await readJson(c, FanOutJson, max);
      input = { ...body, image: decodeImage(body.image, 'image') };
    } else if (isMultipart(c)) {
      const { files, fields } = await readForm(c, 1, max);
      if (files.length === 0) throw new AppError('validation_failed', 'image: one file part');
      const raw = (fields.adapters ?? '').trim();
      let adapters: unknown;
      try {
        adapters = raw.startsWith('[') ? JSON.parse(raw) : raw.split(',').map((s) => s.trim()).filter((s) => s !== '');
      } catch {
        throw new AppError('validation_failed', 'adapters: a JSON array or a comma-separated list');
      }
      const parsed = z.array(AdapterSelector).min(1).max(MAX_FANOUT_ADAPTERS).safeParse(adapters);
      if (!parsed.success) throw validationError(parsed.error);
      input = { image: files[0], adapters: parsed.data, topK: num(fields.topK, 'topK'), threshold: num(fields.threshold, 'threshold') };
    } else {
      throw unsupported(c);
    }
    const principal = c.get('principal');
    const { results } = await classifyFanOut({ deps, engine: deps.engine, ctx: principal, input });
    deps.metrics.countImages(principal.tenantId, 1);
    return c.json({ results: results.map(answerDto) }, 200);
  });
  return app;
}
