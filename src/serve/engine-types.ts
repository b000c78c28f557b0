/**
 * What the batch executor takes and gives back: the queued request (pixels + the adapter refs to
 * load), one image's answers with their timings, and a batch's cost. Shared by the executor, the
 * serving engine and the classify service.
 */
import type { AdapterRef } from './adapter-loader.js';
import type { ItemOutcome, ServeRequest } from './types.js';

/** A preprocessed image: HWC float32 at the backbone's resolution, optionally with a content hash. */
export interface EngineImage {
  readonly pixels: Float32Array;
  /** Content hash (e.g. sha256 of the upload); without it the executor hashes the pixels when the prefix cache needs a key. */
  readonly hash?: string;
}

/** A request as the batcher queues it: items name adapter-version keys; `refs` say how to load them. */
export interface EngineRequest extends ServeRequest<EngineImage> {
  readonly refs: readonly AdapterRef[];
}

export interface Timings {
  /** Enqueue → start of the batch. */
  queueMs: number;
  /** Waiting for adapters of the batch to load (0 when all were resident). */
  loadMs: number;
  /** The shared prefix of the whole batch. */
  prefixMs: number;
  /** CSN + suffix + heads of the whole batch (one batched computation). */
  adapterMs: number;
  /** Enqueue → result. */
  totalMs: number;
}

export interface AdapterAnswer {
  readonly key: string;
  readonly labels: readonly string[];
  readonly logits: Float32Array;
  readonly probs: Float32Array;
}

/** One image's answers, one per adapter named for it, in request order. */
export interface ItemResult {
  readonly answers: AdapterAnswer[];
  readonly timings: Timings;
  /** Images and suffix rows of the batch that answered, and whether this image's prefix came from the cache. */
  readonly batch: { images: number; rows: number; adapters: number; split: number; prefixCached: boolean };
}

/** What one computed batch cost (whole-batch figures; the engine sums them for its stats). */
export interface BatchTimings {
  /** Distinct images that went through the prefix. */
  images: number;
  /** Suffix rows (an image counts once per adapter it went to). */
  rows: number;
  loadMs: number;
  prefixMs: number;
  adapterMs: number;
}

/** One outcome per entry of the batch, in order; `timings` when the forward ran (absent when every request failed before it). */
export interface BatchRun {
  readonly outcomes: ItemOutcome<ItemResult[]>[];
  readonly timings?: BatchTimings;
}
