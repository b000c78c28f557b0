/**
 * Adapter versions from the blob store to serving-ready resident adapters (weights held off the
 * backend as SERVE_PRECISION says: model/resident-adapter.ts): the loader the adapter cache calls
 * on a miss; the bytes it reports are what the resident adapter holds in the process. A version
 * row names its file (object key) and the backbone it was trained on; the file is parsed and
 * validated against the loaded backbone. Any failure is a typed AppError, and the cache never
 * keeps a failed load, so the next request tries again.
 */
import { AppError, isAppError } from '../errors.js';
import { loadResidentAdapter, type Backbone, type ResidentAdapter, type ResidentPrecision } from '../model/index.js';
import type { BlobStore } from '../storage/index.js';
import type { Loaded } from './adapter-cache.js';

/** What the engine needs to know about an adapter version to load it. */
export interface AdapterRef {
  /** Cache key: the immutable version id. */
  readonly key: string;
  /** Blob store key of the adapter's safetensors file. */
  readonly objectKey: string;
  /** Identity of the backbone it was trained on (the version row's backbone_id); checked when given. */
  readonly backboneId?: string | null;
}

export type AdapterLoader = (ref: AdapterRef, signal: AbortSignal) => Promise<Loaded<ResidentAdapter>>;

/**
 * Loads adapter files from `blobs`. Errors: 'adapter_backbone_mismatch' (trained on another
 * backbone, or shapes that do not fit this one), 'invalid_adapter' (malformed file),
 * 'storage_error' (the file is missing or the store failed). `precision`: SERVE_PRECISION.
 */
export function blobAdapterLoader(
  blobs: BlobStore,
  backbone: Pick<Backbone, 'config' | 'identity'>,
  opts: { precision?: ResidentPrecision } = {},
): AdapterLoader {
  const precision = opts.precision ?? 'compact'; // SERVE_PRECISION's default
  return async (ref, signal) => {
    if (ref.backboneId != null && ref.backboneId !== backbone.identity) {
      throw new AppError(
        'adapter_backbone_mismatch',
        `adapter version '${ref.key}' was trained on backbone ${short(ref.backboneId)}, but this server runs ${short(backbone.identity)}`,
        { details: { adapterBackbone: ref.backboneId, serverBackbone: backbone.identity } },
      );
    }
    let bytes: Buffer;
    try {
      bytes = await blobs.getBuffer(ref.objectKey);
    } catch (err) {
      // The version row exists, so a missing file is our storage's fault, not the caller's.
      if (isAppError(err) && err.code === 'not_found') {
        throw new AppError('storage_error', `adapter file for version '${ref.key}' is missing from the blob store`, { cause: err });
      }
      if (isAppError(err)) throw err;
      throw new AppError('storage_error', `reading adapter file for version '${ref.key}' failed`, { cause: err });
    }
    signal.throwIfAborted();
    const adapter = loadResidentAdapter(bytes, backbone.config, precision);
    return { value: adapter, bytes: adapter.byteSize };
  };
}

const short = (id: string) => (id.length > 16 ? `${id.slice(0, 12)}…` : id);
