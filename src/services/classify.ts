/**
 * Classify verbs: resolve the caller's adapter (id or name; pinned version number or alias,
 * default 'latest') to an immutable version while the images are decoded and preprocessed (here,
 * before they are queued, so a slow decode never holds a batch), and hand them to the serving engine.
 *
 * Resolution happens per request, so a newly published version or a moved alias is seen by the
 * next request; the engine caches adapters by version id. Another tenant's adapter is
 * indistinguishable from a missing one ('not_found').
 */
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { z } from 'zod';
import type { AdapterVersion } from '../db/schema.js';
import { AppError, isAppError, validationError } from '../errors.js';
import { preprocessImage } from '../model/index.js';
import type { AdapterRef, ItemResult, ServingEngine } from '../serve/index.js';
import type { ServiceDeps, TenantCtx } from './context.js';
import { startInTurns } from './in-turns.js';
import { MAX_VERSION, VersionResolver, type ResolvedVersion, type VersionSelector } from './version-resolver.js';

export const MAX_IMAGES_PER_REQUEST = 64;
export const MAX_FANOUT_ADAPTERS = 16;

const imageSchema = z
  .custom<Uint8Array>((v) => v instanceof Uint8Array, { message: 'an image must be bytes' })
  .refine((b) => b.byteLength > 0, 'an image must not be empty');

/**
 * The fields every classify request shares, defined once: the route builds its wire schemas
 * (images as base64 text or file parts) from these, and this module parses the decoded input.
 */
export const adapterRefSchema = z.string().min(1).max(200);
export const versionFields = {
  version: z.union([z.number().int().min(1).max(MAX_VERSION), z.string().regex(/^\d{1,9}$/, 'a version is a number')]).optional(),
  alias: z.string().min(1).max(64).optional(),
};
export const answerFields = {
  /** How many labels to return per answer, most probable first. */
  topK: z.number().int().min(1).max(1000).default(5),
  /** Drop labels below this probability (after top-k); probabilities use the adapter's calibrated temperature. */
  threshold: z.number().min(0).max(1).optional(),
};

/** An adapter (id or name) and which version: a number, or an alias (default 'latest'). */
const adapterSelector = z
  .object({ adapter: adapterRefSchema, ...versionFields })
  .refine((s) => s.version === undefined || s.alias === undefined, 'give a version or an alias, not both');

export const classifyInputSchema = adapterSelector.and(
  z.object({ images: z.array(imageSchema).min(1).max(MAX_IMAGES_PER_REQUEST), ...answerFields }),
);
export type ClassifyInput = z.input<typeof classifyInputSchema>;

export const fanOutInputSchema = z.object({
  image: imageSchema,
  adapters: z.array(z.union([adapterRefSchema.transform((adapter) => ({ adapter })), adapterSelector])).min(1).max(MAX_FANOUT_ADAPTERS),
  ...answerFields,
});
export type FanOutInput = z.input<typeof fanOutInputSchema>;

export interface Prediction {
  label: string;
  probability: number;
}

export interface AnsweredBy {
  adapterId: string;
  adapterName: string;
  versionId: string;
  version: number;
}

export interface ClassifyTimings {
  /** Adapter and version lookup. */
  resolveMs: number;
  /** Decoding and resizing the images of the request. */
  preprocessMs: number;
  /** Waiting for a batch; then the batch's adapter loads, shared prefix and batched adapters. */
  queueMs: number;
  loadMs: number;
  prefixMs: number;
  adapterMs: number;
  /** The whole call. */
  totalMs: number;
}

export interface ClassifyAnswer {
  adapter: AnsweredBy;
  predictions: Prediction[];
  timings: ClassifyTimings;
}

type Deps = Pick<ServiceDeps, 'database' | 'backbone' | 'config'> & {
  /** Remembers lookups where that is safe (see version-resolver.ts); without one, every call asks the database. */
  resolver?: VersionResolver;
};

/** Several images through one adapter: one answer per image, in order. */
export async function classify({ deps, engine, ctx, input }: { deps: Deps; engine: ServingEngine; ctx: TenantCtx; input: ClassifyInput }): Promise<{ results: ClassifyAnswer[] }> {
  const started = performance.now();
  const parsed = parse(classifyInputSchema, input);
  const [[resolved, resolveMs], [images, preprocessMs]] = await both(
    timed(() => resolveVersion(deps, ctx, parsed)),
    timed(() => preprocessAll(deps, parsed.images)),
  );
  const results = await engine.classify({ tenantId: ctx.tenantId, adapter: refOf(resolved.version), images });
  return {
    results: results.map((r) => answer(r, 0, resolved, parsed, { resolveMs, preprocessMs, started })),
  };
}

/** One image through several of the caller's adapters (the prefix runs once): one answer per adapter, in order. */
export async function classifyFanOut({ deps, engine, ctx, input }: { deps: Deps; engine: ServingEngine; ctx: TenantCtx; input: FanOutInput }): Promise<{ results: ClassifyAnswer[] }> {
  const started = performance.now();
  const parsed = parse(fanOutInputSchema, input);
  const [[resolved, resolveMs], [[image], preprocessMs]] = await both(
    timed(() => Promise.all(parsed.adapters.map((sel) => resolveVersion(deps, ctx, sel)))),
    timed(() => preprocessAll(deps, [parsed.image])),
  );
  const result = await engine.classifyFanOut({ tenantId: ctx.tenantId, image, adapters: resolved.map((r) => refOf(r.version)) });
  return {
    results: resolved.map((r, k) => answer(result, k, r, parsed, { resolveMs, preprocessMs, started })),
  };
}

function parse<S extends z.ZodType>(schema: S, input: unknown): z.output<S> {
  const r = schema.safeParse(input);
  if (!r.success) throw validationError(r.error);
  return r.data;
}

/**
 * The adapter lookup (database) and the image decode (sharp's thread pool) overlap. When both
 * fail, the lookup's error wins, so an unknown adapter is a 404 whatever the images are.
 */
async function both<A, B>(first: Promise<A>, second: Promise<B>): Promise<[A, B]> {
  const [a, b] = await Promise.allSettled([first, second]);
  if (a.status === 'rejected') throw a.reason;
  if (b.status === 'rejected') throw b.reason;
  return [a.value, b.value];
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const value = await fn();
  return [value, performance.now() - t0];
}

function resolveVersion(deps: Deps, ctx: TenantCtx, sel: VersionSelector): Promise<ResolvedVersion> {
  // Without the process's resolver (CLI, tests), a throwaway one: the same lookup, nothing kept.
  return (deps.resolver ?? new VersionResolver(deps)).resolve(ctx.tenantId, sel);
}

function refOf(version: AdapterVersion): AdapterRef {
  return { key: version.id, objectKey: version.objectKey, backboneId: version.backboneId };
}

async function preprocessAll(deps: Deps, images: Uint8Array[]): Promise<Array<{ pixels: Float32Array; hash: string }>> {
  const one = async (bytes: Uint8Array, index: number) => {
    try {
      const pixels = await preprocessImage(bytes, deps.backbone.config, { maxPixels: deps.config.IMAGE_MAX_PIXELS });
      // Hash of the upload: equal bytes decode to equal pixels, so it keys the prefix cache.
      return { pixels, hash: createHash('sha256').update(bytes).digest('hex') };
    } catch (err) {
      if (isAppError(err)) {
        throw new AppError(err.code, images.length > 1 ? `image ${index}: ${err.message}` : err.message, { details: { ...err.details, index } });
      }
      throw err;
    }
  };
  // Small PNGs decode on this thread (≤ 0.35 ms each): one image per turn of the event loop.
  return startInTurns(images, one);
}

function answer(
  result: ItemResult,
  k: number,
  resolved: ResolvedVersion,
  options: { topK: number; threshold?: number },
  t: { resolveMs: number; preprocessMs: number; started: number },
): ClassifyAnswer {
  const a = result.answers[k];
  const order = [...a.probs.keys()].sort((x, y) => a.probs[y] - a.probs[x] || x - y);
  const predictions = order
    .slice(0, options.topK)
    .map((i) => ({ label: a.labels[i], probability: a.probs[i] }))
    .filter((p) => options.threshold === undefined || p.probability >= options.threshold);
  const { queueMs, loadMs, prefixMs, adapterMs } = result.timings;
  return {
    adapter: {
      adapterId: resolved.adapter.id,
      adapterName: resolved.adapter.name,
      versionId: resolved.version.id,
      version: resolved.version.version,
    },
    predictions,
    timings: { resolveMs: t.resolveMs, preprocessMs: t.preprocessMs, queueMs, loadMs, prefixMs, adapterMs, totalMs: performance.now() - t.started },
  };
}
