/**
 * Shared pieces of the serving tests: a tiny backbone, random adapters written as real adapter
 * files into a real blob store, preprocessed images, and one-at-a-time reference predictions.
 */
import * as tf from '@tensorflow/tfjs';
import {
  loadResidentAdapter,
  materialise,
  predictLogits,
  saveAdapter,
  type AdapterSpec,
  type Backbone,
  type ResidentPrecision,
} from '../../src/model/index.js';
import type { AdapterRef } from '../../src/serve/index.js';
import { ServingEngine, blobAdapterLoader, type ServingEngineOptions } from '../../src/serve/index.js';
import type { BlobStore } from '../../src/storage/index.js';
import { randomAdapter, rng } from '../helpers/tiny-backbone.js';

/** Depth 6 so adapters can start adding after different blocks (different splits in one batch). */
export const TINY = { width: 8, depth: 6, heads: 2, mlpDim: 16, patchSize: 2, imageSize: 8, seed: 11 } as const;

export interface StoredAdapter {
  ref: AdapterRef;
  spec: AdapterSpec;
  /** Adapter file bytes as stored. */
  bytes: Buffer;
}

/** A varied spec: label count, DTL / DTL+ (kernel 2–4), reads and additions differ with `i`. */
export function variedSpec(i: number, depth: number = TINY.depth): AdapterSpec {
  const r = rng(1000 + i);
  const first = Math.floor(r.uniform() * depth); // first addition after block `first`
  const adds = [...Array(depth).keys()].filter((b) => b >= first && (b === first || r.uniform() < 0.6));
  const reads = [...Array(depth).keys()].filter((b) => b <= first || r.uniform() < 0.7);
  const classes = 2 + Math.floor(r.uniform() * 7);
  const plus = r.uniform() < 0.5;
  return {
    rank: 1 + Math.floor(r.uniform() * 3),
    beta: plus ? 100 : 20 + Math.floor(r.uniform() * 80),
    loraBeforeBlocks: reads,
    addAfterBlocks: adds,
    fusionKernel: plus ? 2 + Math.floor(r.uniform() * 3) : 0,
    labels: Array.from({ length: classes }, (_, k) => `a${i}-c${k}`),
  };
}

/** Writes `count` random adapters (every weight non-zero) as adapter files under `prefix`. */
export async function storeAdapters(
  blobs: BlobStore,
  backbone: Backbone,
  count: number,
  opts: { prefix?: string; spec?: (i: number) => AdapterSpec; seed?: number } = {},
): Promise<StoredAdapter[]> {
  const out: StoredAdapter[] = [];
  for (let i = 0; i < count; i++) {
    const spec = (opts.spec ?? variedSpec)(i);
    const adapter = randomAdapter(backbone.config, spec, (opts.seed ?? 0) * 7919 + i + 1, 0.5);
    const bytes = saveAdapter(adapter);
    adapter.dispose();
    const objectKey = `${opts.prefix ?? 'adapters'}/${i}.safetensors`;
    await blobs.putBuffer(objectKey, bytes);
    out.push({ ref: { key: `v-${opts.prefix ?? 'adapters'}-${i}`, objectKey, backboneId: backbone.identity }, spec, bytes });
  }
  return out;
}

/** Preprocessed-looking images (values in [-1, 1]) of the backbone's size. */
export function randomImages(count: number, backbone: Backbone, seed = 5): Float32Array[] {
  const r = rng(seed);
  const per = backbone.config.imageSize ** 2 * 3;
  return Array.from({ length: count }, () => Float32Array.from({ length: per }, () => r.uniform() * 2 - 1));
}

/**
 * Logits of one image through one adapter file, computed alone (the reference the engine must
 * match): on the weights as the engine holds them (SERVE_PRECISION, compact by default).
 */
export function referenceLogits(
  backbone: Backbone,
  bytes: Uint8Array,
  image: Float32Array,
  precision: ResidentPrecision = 'compact',
): { logits: Float32Array; probs: Float32Array } {
  const adapter = materialise(loadResidentAdapter(bytes, backbone.config, precision));
  const s = backbone.config.imageSize;
  const pixels = tf.tensor4d(image, [1, s, s, 3]);
  // predictLogits returns a kept tensor (tidy would not free it): dispose by hand.
  const logits = predictLogits(backbone, adapter, pixels);
  try {
    return { logits: logits.dataSync() as Float32Array, probs: tf.tidy(() => tf.softmax(logits).dataSync() as Float32Array) };
  } finally {
    for (const t of [pixels, logits]) t.dispose();
    adapter.dispose();
  }
}

export function makeEngine(backbone: Backbone, blobs: BlobStore, overrides: Partial<ServingEngineOptions> = {}): ServingEngine {
  return new ServingEngine({
    backbone,
    loader: blobAdapterLoader(blobs, backbone),
    adapterCacheBytes: 64 * 1024 * 1024,
    prefixCacheBytes: 0,
    maxBatchSize: 16,
    maxWaitMs: 2,
    queueMaxTotal: 10_000,
    queueMaxPerTenant: 10_000,
    requestDeadlineMs: 60_000,
    ...overrides,
  });
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
