/**
 * The batch executor: what runs one micro-batch of classify requests from many tenants.
 *
 *   1. acquire every adapter the batch names (one load per cold adapter, however many ask);
 *      a request whose adapter fails to load fails alone;
 *   2. ONE shared prefix over the batch's distinct images, cut at the earliest first addition
 *      among the batch's adapters (cached rows from the prefix cache + fresh rows);
 *   3. ONE suffix call: a group per adapter (rows repeat for fan-out), each with its own CSN,
 *      additions and head;
 *   (2 and 3 run the frozen blocks on the backbone's engine: onnxruntime when attached, else tfjs)
 *   4. softmax per group (logits / the adapter's calibrated temperature), results routed back to (request, image, adapter) slots.
 * Leases are released and every tensor of the batch is disposed before it returns.
 *
 * Images arrive preprocessed (decoding happens in the service, before enqueue). The executor owns
 * no state: it reads the caller's requests without writing to them, tells the adapter cache where a
 * cold adapter's file is through the acquire's load context, and returns the batch's timings with
 * its outcomes; the serving engine keeps the totals.
 */
import { createHash } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { performance } from 'node:perf_hooks';
import * as tf from '@tensorflow/tfjs';
import { AppError } from '../errors.js';
import {
  blockShape,
  concatPrefix,
  disposePrefix,
  enginePrefix,
  engineSuffix,
  materialiseGroups,
  splitPoint,
  type Backbone,
  type MaterialisedGroups,
  type PrefixState,
  type ResidentAdapter,
} from '../model/index.js';
import type { AdapterCache, Lease } from './adapter-cache.js';
import type { AdapterRef } from './adapter-loader.js';
import type { PrefixActivationCache, PrefixRows } from './prefix-activation-cache.js';
import type { BatchRun, BatchTimings, EngineImage, EngineRequest, ItemResult } from './engine-types.js';
import type { BatchEntry, ItemOutcome } from './types.js';

export type { AdapterAnswer, BatchRun, BatchTimings, EngineImage, EngineRequest, ItemResult, Timings } from './engine-types.js';

export interface ExecutorDeps {
  readonly backbone: Backbone;
  /** Resident adapters; a cold one is loaded from the AdapterRef passed as the acquire's load context. */
  readonly cache: AdapterCache<ResidentAdapter, AdapterRef>;
  readonly prefixCache: PrefixActivationCache;
  /** Same clock as the batcher (request deadlines, queue time). */
  readonly now: () => number;
}

export function pixelHash(pixels: Float32Array): string {
  return createHash('sha256').update(new Uint8Array(pixels.buffer, pixels.byteOffset, pixels.byteLength)).digest('hex');
}

export async function executeBatch(deps: ExecutorDeps, batch: readonly BatchEntry<EngineRequest>[]): Promise<BatchRun> {
  const { cache } = deps;
  const outcomes: Array<ItemOutcome<ItemResult[]> | undefined> = batch.map(() => undefined);
  const leases = new Map<string, Lease<ResidentAdapter>>();
  const failures = new Map<string, Error>();
  let timings: BatchTimings | undefined;
  const t0 = performance.now();
  try {
    // 1. Adapters: one acquire per distinct key, carrying its ref; a failure is recorded against its key only.
    const keys = new Set<string>();
    const refs = new Map<string, AdapterRef>();
    for (const entry of batch) {
      for (const ref of entry.request.refs) refs.set(ref.key, ref);
      for (const item of entry.request.items) for (const k of item.adapterKeys) keys.add(k);
    }
    const latest = Math.max(...batch.map((e) => e.deadline));
    // One signal for the batch's waits: a load that hangs cannot hold the batch past every deadline.
    const signal = AbortSignal.timeout(Math.max(1, latest - deps.now()));
    setMaxListeners(0, signal); // one listener per adapter key of the batch, by design
    const settled = await Promise.allSettled([...keys].map((k) => cache.acquire(k, { signal, context: refs.get(k) })));
    [...keys].forEach((k, i) => {
      const s = settled[i];
      if (s.status === 'fulfilled') leases.set(k, s.value);
      else failures.set(k, s.reason instanceof Error ? s.reason : new AppError('internal', String(s.reason)));
    });
    const loadMs = performance.now() - t0;

    const live: number[] = [];
    batch.forEach((entry, r) => {
      const bad = entry.request.items.flatMap((it) => it.adapterKeys).find((k) => failures.has(k));
      if (bad !== undefined) outcomes[r] = { ok: false, error: failures.get(bad)! };
      else live.push(r);
    });
    if (live.length > 0) {
      try {
        const computed = await compute(deps, batch, live, leases, loadMs);
        live.forEach((r, i) => (outcomes[r] = { ok: true, value: computed.results[i] }));
        timings = computed.timings;
      } catch (err) {
        const error = err instanceof Error ? err : new AppError('internal', 'batch failed', { cause: err });
        for (const r of live) outcomes[r] = { ok: false, error };
      }
    }
  } finally {
    for (const lease of leases.values()) lease.release();
  }
  return {
    outcomes: outcomes.map((o) => o ?? { ok: false, error: new AppError('internal', 'request was not answered') }),
    timings,
  };
}

interface Slot {
  readonly group: number;
  readonly pos: number;
}

/** A distinct image of the batch; `hash` is its prefix-cache key (the caller's, or computed here). */
interface BatchImage {
  readonly pixels: Float32Array;
  readonly hash: string | undefined;
}

/**
 * Steps 2–4 for the requests `live` (indices into batch). Only the native engine's block runs are
 * awaited; the executor owns every tensor it makes until it returns, so interleaving is harmless.
 */
async function compute(
  deps: ExecutorDeps,
  batch: readonly BatchEntry<EngineRequest>[],
  live: number[],
  leases: Map<string, Lease<ResidentAdapter>>,
  loadMs: number,
): Promise<{ results: ItemResult[][]; timings: BatchTimings }> {
  const { backbone, prefixCache } = deps;
  const depth = backbone.config.depth;

  // Distinct images (by content hash when known, else by object) → prefix row. Hashes computed
  // here stay here: the caller's image objects are read, never written.
  const useCache = prefixCache.enabled;
  const computedHash = new Map<EngineImage, string>();
  const hashOf = (img: EngineImage): string | undefined => {
    if (img.hash !== undefined || !useCache) return img.hash;
    let h = computedHash.get(img);
    if (h === undefined) computedHash.set(img, (h = pixelHash(img.pixels)));
    return h;
  };
  const imageIndex = new Map<EngineImage | string, number>();
  const images: BatchImage[] = [];
  const rowOfItem: number[][] = [];
  for (const r of live) {
    rowOfItem.push(
      batch[r].request.items.map((item) => {
        const img = item.payload;
        const hash = hashOf(img);
        const id = hash ?? img;
        let idx = imageIndex.get(id);
        if (idx === undefined) {
          idx = images.length;
          images.push({ pixels: img.pixels, hash });
          imageIndex.set(id, idx);
        }
        return idx;
      }),
    );
  }

  // Groups: one per adapter, rows in first-seen order; slots say where each answer lands.
  const groupOf = new Map<string, number>();
  const groups: Array<{ key: string; adapter: ResidentAdapter; images: number[] }> = [];
  const slots: Slot[][][] = live.map((r, li) =>
    batch[r].request.items.map((item, j) =>
      item.adapterKeys.map((key) => {
        let g = groupOf.get(key);
        if (g === undefined) {
          g = groups.length;
          groups.push({ key, adapter: leases.get(key)!.value, images: [] });
          groupOf.set(key, g);
        }
        groups[g].images.push(rowOfItem[li][j]);
        return { group: g, pos: groups[g].images.length - 1 };
      }),
    ),
  );
  const split = Math.min(...groups.map((g) => splitPoint(g.adapter.spec, depth)));

  const tPrefix = performance.now();
  const { state, rowOfImage, cached } = await buildPrefix(backbone, prefixCache, images, split);
  let logits: tf.Tensor2D[] = [];
  let data: Array<{ logits: Float32Array; probs: Float32Array }>;
  let weights: MaterialisedGroups | undefined;
  const tSuffix = performance.now();
  try {
    // Resident adapters become float32 tensors for this batch only (freed below).
    weights = materialiseGroups(groups.map((g) => ({ adapter: g.adapter, rows: g.images.map((i) => rowOfImage[i]) })));
    logits = await engineSuffix(backbone, state, weights.groups);
    data = logits.map((l, g) => {
      // The adapter's calibrated temperature (1 = raw softmax): probabilities mean what a threshold says.
      const t = groups[g].adapter.temperature;
      return {
        logits: l.dataSync() as Float32Array,
        probs: tf.tidy(() => tf.softmax(t === 1 ? l : tf.div(l, t)).dataSync() as Float32Array),
      };
    });
  } finally {
    for (const l of logits) l.dispose();
    weights?.dispose();
    disposePrefix(state);
  }
  const tEnd = performance.now();
  const prefixMs = tSuffix - tPrefix;
  const adapterMs = tEnd - tSuffix;
  const rows = groups.reduce((a, g) => a + g.images.length, 0);

  const done = deps.now();
  const results = live.map((r, li) => {
    const entry = batch[r];
    return entry.request.items.map((_, j) => ({
      answers: slots[li][j].map(({ group, pos }) => {
        const c = groups[group].adapter.spec.labels.length;
        const d = data[group];
        return {
          key: groups[group].key,
          labels: groups[group].adapter.spec.labels,
          logits: d.logits.slice(pos * c, (pos + 1) * c),
          probs: d.probs.slice(pos * c, (pos + 1) * c),
        };
      }),
      timings: {
        queueMs: entry.startedAt - entry.enqueuedAt,
        loadMs,
        prefixMs,
        adapterMs,
        totalMs: done - entry.enqueuedAt,
      },
      batch: { images: images.length, rows, adapters: groups.length, split, prefixCached: cached[rowOfItem[li][j]] },
    }));
  });
  return { results, timings: { images: images.length, rows, loadMs, prefixMs, adapterMs } };
}

/**
 * The batch's prefix state: cached rows first, then a fresh runPrefix over the rest (whose rows
 * are then cached). `rowOfImage[i]` is image i's row in the state.
 */
async function buildPrefix(
  backbone: Backbone,
  prefixCache: PrefixActivationCache,
  images: BatchImage[],
  split: number,
): Promise<{ state: PrefixState; rowOfImage: number[]; cached: boolean[] }> {
  const hits: Array<{ image: number; rows: PrefixRows }> = [];
  const fresh: number[] = [];
  images.forEach((img, i) => {
    const rows = prefixCache.enabled ? prefixCache.get(img.hash!, split) : undefined;
    if (rows !== undefined) hits.push({ image: i, rows });
    else fresh.push(i);
  });
  const rowOfImage = new Array<number>(images.length);
  const cached = new Array<boolean>(images.length).fill(false);
  hits.forEach((h, row) => {
    rowOfImage[h.image] = row;
    cached[h.image] = true;
  });
  fresh.forEach((i, k) => (rowOfImage[i] = hits.length + k));

  const parts: PrefixState[] = [];
  try {
    if (hits.length > 0) parts.push(stateFromRows(backbone, hits.map((h) => h.rows), split));
    if (fresh.length > 0) {
      parts.push(await enginePrefix(backbone, fresh.map((i) => images[i].pixels), split));
      if (prefixCache.enabled) storeRows(prefixCache, parts[parts.length - 1], fresh.map((i) => images[i].hash!));
    }
    if (parts.length === 1) return { state: parts.pop()!, rowOfImage, cached };
    return { state: concatPrefix(parts), rowOfImage, cached };
  } finally {
    for (const p of parts) disposePrefix(p);
  }
}

function stateFromRows(backbone: Backbone, rows: PrefixRows[], split: number): PrefixState {
  // Block i's input has block i's shape (a Swin's stages differ); x has block split−1's.
  const stack = (pick: (r: PrefixRows) => Float32Array, [tokens, width]: [number, number]) => {
    const per = tokens * width;
    const all = new Float32Array(per * rows.length);
    rows.forEach((r, i) => all.set(pick(r), i * per));
    return tf.tensor3d(all, [rows.length, tokens, width]);
  };
  const inputs: tf.Tensor3D[] = [];
  try {
    for (let i = 0; i < split; i++) inputs.push(stack((r) => r.inputs[i], blockShape(backbone.config, i)));
    return { inputs, x: stack((r) => r.x, blockShape(backbone.config, split - 1)), split };
  } catch (err) {
    for (const t of inputs) t.dispose();
    throw err;
  }
}

function storeRows(prefixCache: PrefixActivationCache, state: PrefixState, hashes: string[]): void {
  const tensors = [...state.inputs, state.x];
  const arrays = tensors.map((t) => t.dataSync() as Float32Array);
  // Per-image floats of each tensor (a Swin's stages differ) and where each starts in an image's buffer.
  const per = tensors.map((t) => t.shape[1] * t.shape[2]);
  const at = per.map((_, k) => per.slice(0, k).reduce((a, b) => a + b, 0));
  const total = per.reduce((a, b) => a + b, 0);
  hashes.forEach((hash, row) => {
    // One buffer per image: inputs[0..split−1] then x, as views.
    const buf = new Float32Array(total);
    arrays.forEach((a, k) => buf.set(a.subarray(row * per[k], (row + 1) * per[k]), at[k]));
    const view = (k: number) => buf.subarray(at[k], at[k] + per[k]);
    prefixCache.put(hash, { split: state.split, inputs: state.inputs.map((_, k) => view(k)), x: view(state.inputs.length) });
  });
}
