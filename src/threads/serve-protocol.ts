/**
 * The messages between the serving engine (main thread) and an executor thread, and how a batch,
 * its answers and errors cross. The batch's distinct images go packed into one Float32Array whose
 * buffer is transferred (the caller's pixel arrays are copied once, never detached); the answers'
 * logits and probabilities come back as transferred buffers. Errors cross as plain objects and
 * become AppErrors again on the other side.
 */
import { AppError, ERROR_CODES, type ErrorCode } from '../errors.js';
import type { AdapterRef, BatchEntry, BatchRun, EngineImage, EngineRequest, ExecutorStats, ItemOutcome, ItemResult } from '../serve/index.js';

/** What the executor thread is started with (`workerData.data`). */
export interface ServeExecutorData {
  /** The parent's environment, as parsed into its config (startComputeRuntime reads it). */
  env: Record<string, string | undefined>;
  /** This executor's share of ADAPTER_CACHE_BYTES and PREFIX_CACHE_BYTES. */
  adapterCacheBytes: number;
  prefixCacheBytes: number;
  index: number;
  /** SERVE_WORKER_NICE */
  nice: number;
}

export interface WireError {
  message: string;
  code?: string;
  details?: Record<string, unknown>;
  retryAfterSeconds?: number;
}

export interface WireEntry {
  seq: number;
  tenantId: string;
  cost: number;
  enqueuedAt: number;
  deadline: number;
  startedAt: number;
  refs: AdapterRef[];
  /** `image`: index into the packed images. */
  items: Array<{ image: number; hash?: string; adapterKeys: string[] }>;
}

export type ToExecutor =
  | { type: 'run'; id: number; sentAt: number; pixels: Float32Array; perImage: number; entries: WireEntry[] }
  | { type: 'preload'; id: number; refs: AdapterRef[]; pin: boolean }
  | { type: 'evict'; keys: string[] }
  | { type: 'close' };

/** What every answer carries: the executor's stats now and the residency of versions that changed since its last message. */
export interface Report {
  stats: ExecutorStats;
  residency: Array<[string, boolean]>;
}

export type WireOutcome = { ok: true; value: ItemResult[] } | { ok: false; error: WireError };

export type FromExecutor =
  | { type: 'ready'; report: Report }
  | { type: 'result'; id: number; outcomes: WireOutcome[]; timings?: BatchRun['timings']; report: Report }
  | { type: 'preloaded'; id: number; results: Array<{ key: string; error?: WireError }>; report: Report }
  | { type: 'report'; report: Report }
  | { type: 'closed' };

export function toWireError(err: unknown): WireError {
  if (err instanceof AppError) {
    return { message: err.message, code: err.code, details: err.details, retryAfterSeconds: err.retryAfterSeconds };
  }
  return { message: err instanceof Error ? err.message : String(err) };
}

export function fromWireError(w: WireError): Error {
  if (w.code !== undefined && w.code in ERROR_CODES) {
    return new AppError(w.code as ErrorCode, w.message, { details: w.details, retryAfterSeconds: w.retryAfterSeconds });
  }
  return new AppError('internal', w.message);
}

/** A batch as it crosses: distinct image objects packed once into one transferable buffer. */
export function encodeBatch(batch: readonly BatchEntry<EngineRequest>[], perImage: number): { pixels: Float32Array; entries: WireEntry[] } {
  const index = new Map<EngineImage, number>();
  const images: EngineImage[] = [];
  const entries = batch.map((e) => ({
    seq: e.seq,
    tenantId: e.tenantId,
    cost: e.cost,
    enqueuedAt: e.enqueuedAt,
    deadline: e.deadline,
    startedAt: e.startedAt,
    refs: e.request.refs.map((r) => ({ key: r.key, objectKey: r.objectKey, backboneId: r.backboneId })),
    items: e.request.items.map((item) => {
      let i = index.get(item.payload);
      if (i === undefined) {
        i = images.length;
        images.push(item.payload);
        index.set(item.payload, i);
      }
      return { image: i, hash: item.payload.hash, adapterKeys: [...item.adapterKeys] };
    }),
  }));
  const pixels = new Float32Array(images.length * perImage);
  images.forEach((img, i) => pixels.set(img.pixels, i * perImage));
  return { pixels, entries };
}

/** The batch again, on the executor's side: one image object per packed image (views on the transferred buffer). */
export function decodeBatch(pixels: Float32Array, perImage: number, entries: WireEntry[]): BatchEntry<EngineRequest>[] {
  const images = new Map<number, EngineImage>();
  return entries.map((e) => ({
    seq: e.seq,
    tenantId: e.tenantId,
    cost: e.cost,
    enqueuedAt: e.enqueuedAt,
    deadline: e.deadline,
    startedAt: e.startedAt,
    request: {
      tenantId: e.tenantId,
      deadline: e.deadline,
      refs: e.refs,
      items: e.items.map((it) => {
        let img = images.get(it.image);
        if (img === undefined) {
          const view = pixels.subarray(it.image * perImage, (it.image + 1) * perImage);
          img = it.hash === undefined ? { pixels: view } : { pixels: view, hash: it.hash };
          images.set(it.image, img);
        }
        return { payload: img, adapterKeys: it.adapterKeys };
      }),
    },
  }));
}

/** Outcomes as they cross back, and the buffers to transfer with them. */
export function encodeOutcomes(outcomes: readonly ItemOutcome<ItemResult[]>[]): { outcomes: WireOutcome[]; transfer: ArrayBuffer[] } {
  const transfer = new Set<ArrayBuffer>();
  const wire = outcomes.map((o): WireOutcome => {
    if (!o.ok) return { ok: false, error: toWireError(o.error) };
    for (const r of o.value) {
      for (const a of r.answers) {
        transfer.add(a.logits.buffer as ArrayBuffer);
        transfer.add(a.probs.buffer as ArrayBuffer);
      }
    }
    return { ok: true, value: o.value };
  });
  return { outcomes: wire, transfer: [...transfer] };
}

export function decodeOutcomes(outcomes: readonly WireOutcome[]): ItemOutcome<ItemResult[]>[] {
  return outcomes.map((o) => (o.ok ? o : { ok: false, error: fromWireError(o.error) }));
}
