/**
 * Where every byte of data lives (uploads, prepared data sets, adapter files, backbones). Two
 * implementations: S3 (any S3-protocol endpoint) and local disk. Keys are '/'-separated relative
 * paths, validated the same way for both, so code that works on disk also works on S3.
 */
import type { Readable } from 'node:stream';
import { AppError } from '../errors.js';

export interface BlobHead {
  size: number;
  etag?: string;
  modified: Date;
}

export interface BlobEntry {
  key: string;
  size: number;
}

export interface PutOptions {
  contentType?: string;
}

export type BlobSource = Readable | AsyncIterable<Uint8Array>;

export interface BlobStore {
  readonly kind: 'disk' | 's3';
  /** Write a whole object; a concurrent reader sees the old or the new object, never a mix. */
  putBuffer(key: string, data: Uint8Array, opts?: PutOptions): Promise<{ size: number }>;
  /**
   * Stream an object in. With `size`, a stream of any other length fails with 'bad_request' and
   * stores nothing.
   */
  putStream(key: string, source: BlobSource, size?: number, opts?: PutOptions): Promise<{ size: number }>;
  /** Throws 'not_found' for a missing key. */
  getStream(key: string): Promise<Readable>;
  /** Throws 'not_found' for a missing key. */
  getBuffer(key: string): Promise<Buffer>;
  /** null for a missing key. */
  head(key: string): Promise<BlobHead | null>;
  /** Idempotent: deleting a missing key succeeds. */
  delete(key: string): Promise<void>;
  /** Objects whose key starts with `prefix` (a plain string prefix, as in S3), in key order. */
  list(prefix: string): AsyncIterable<BlobEntry>;
  /** Check the store is reachable (readiness probes). Throws 'storage_error'. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

const MAX_KEY_BYTES = 1024;

/**
 * Keys: 1–1024 bytes, '/'-separated non-empty segments, no '.' or '..' segments, no backslashes,
 * no control characters, no leading '/' or '.'. Throws 'bad_request'.
 */
export function validateKey(key: string): string {
  const bad = (why: string) => new AppError('bad_request', `invalid blob key '${key.slice(0, 200)}': ${why}`);
  if (typeof key !== 'string' || key.length === 0) throw bad('empty');
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) throw bad('longer than 1024 bytes');
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f\\]/.test(key)) throw bad('control character or backslash');
  if (key.startsWith('/')) throw bad('absolute');
  // Top-level names starting with '.' are the store's own (the disk store's temp folder).
  if (key.startsWith('.')) throw bad("starts with '.'");
  for (const seg of key.split('/')) {
    if (seg === '') throw bad('empty path segment');
    if (seg === '.' || seg === '..') throw bad("'.' or '..' segment");
  }
  return key;
}

/** A prefix for list(): like a key, but may be empty and may end with '/'. */
export function validatePrefix(prefix: string): string {
  if (prefix === '') return prefix;
  validateKey(prefix.endsWith('/') ? prefix.slice(0, -1) : prefix);
  return prefix;
}

export async function listAll(store: BlobStore, prefix: string): Promise<BlobEntry[]> {
  const out: BlobEntry[] = [];
  for await (const entry of store.list(prefix)) out.push(entry);
  return out;
}

/** Delete every object under a prefix; returns how many. */
export async function deletePrefix(store: BlobStore, prefix: string): Promise<number> {
  if (prefix === '') throw new AppError('bad_request', 'refusing to delete the whole blob store');
  let n = 0;
  for (const { key } of await listAll(store, prefix)) {
    await store.delete(key);
    n++;
  }
  return n;
}

export function sizeMismatch(key: string, expected: number, actual: number): AppError {
  return new AppError('bad_request', `blob '${key}': expected ${expected} bytes, got ${actual}`, {
    details: { expected, actual },
  });
}
