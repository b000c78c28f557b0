/**
 * One contract, two stores: every BlobStore implementation must pass the same suite. The S3 store
 * runs against s3rver in-process.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors.js';
import { deletePrefix, listAll, type BlobStore } from '../../src/storage/blob-store.js';
import { DiskBlobStore } from '../../src/storage/disk.js';
import { makeTempDir } from '../helpers/db.js';
import { startS3, type TestS3 } from '../helpers/s3.js';

const MIB = 1024 * 1024;

interface Target {
  store: BlobStore;
  stop(): Promise<void>;
  /**
   * Whether the server behind the store replaces an object atomically. Real S3 does (a PUT is
   * all-or-nothing); s3rver writes the object file in place, so racing PUTs of one key can
   * interleave there — a property of the test server, not of S3BlobStore.
   */
  atomicOverwrite: boolean;
}

const targets: Array<[string, () => Promise<Target>]> = [
  [
    'disk',
    async () => {
      const root = await makeTempDir('dtl-blobs');
      const store = await DiskBlobStore.open({ root });
      return { store, stop: () => fs.rm(root, { recursive: true, force: true }), atomicOverwrite: true };
    },
  ],
  [
    's3',
    async () => {
      const s3: TestS3 = await startS3();
      return { store: s3.store, stop: () => s3.stop(), atomicOverwrite: false };
    },
  ],
];

/** `total` pseudo-random bytes in `chunk`-sized pieces, hashed as they are produced. */
function generated(total: number, chunk = MIB): { stream: Readable; digest: () => string } {
  const hash = createHash('sha256');
  async function* gen() {
    for (let sent = 0; sent < total; sent += chunk) {
      const piece = randomBytes(Math.min(chunk, total - sent));
      hash.update(piece);
      yield piece;
    }
  }
  return { stream: Readable.from(gen()), digest: () => hash.digest('hex') };
}

async function hashStream(stream: Readable): Promise<{ hash: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const chunk of stream) {
    h.update(chunk as Buffer);
    size += (chunk as Buffer).byteLength;
  }
  return { hash: h.digest('hex'), size };
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (err instanceof AppError) return err.code;
    throw err;
  }
  throw new Error('expected a rejection');
}

describe.each(targets)('blob store contract: %s', (_name, make) => {
  let target: Target;
  let store: BlobStore;
  beforeAll(async () => {
    target = await make();
    store = target.store;
  });
  afterAll(async () => {
    await store?.close();
    await target?.stop();
  });

  it('round-trips buffers, including empty and binary ones, and overwrites', async () => {
    const bin = randomBytes(70_000);
    expect(await store.putBuffer('a/bin', bin)).toEqual({ size: bin.length });
    expect((await store.getBuffer('a/bin')).equals(bin)).toBe(true);
    await store.putBuffer('a/empty', Buffer.alloc(0));
    expect((await store.getBuffer('a/empty')).length).toBe(0);
    await store.putBuffer('a/bin', Buffer.from('replaced'));
    expect((await store.getBuffer('a/bin')).toString()).toBe('replaced');
    const viaStream = await hashStream(await store.getStream('a/bin'));
    expect(viaStream).toEqual({ hash: createHash('sha256').update('replaced').digest('hex'), size: 8 });
    await store.putBuffer('unicodé/ключ file.txt', Buffer.from('ok'));
    expect((await store.getBuffer('unicodé/ключ file.txt')).toString()).toBe('ok');
  });

  it('streams 50 MB in and out intact (hash-compared)', async () => {
    const total = 50 * MIB;
    const src = generated(total);
    expect(await store.putStream('big/fifty', src.stream, total)).toEqual({ size: total });
    const expected = src.digest();
    expect((await store.head('big/fifty'))?.size).toBe(total);
    expect(await hashStream(await store.getStream('big/fifty'))).toEqual({ hash: expected, size: total });
  });

  it('a stream of unknown length is stored; a stream whose length differs from the size given stores nothing', async () => {
    const src = generated(3 * MIB + 17, 256 * 1024);
    expect(await store.putStream('len/unknown', src.stream)).toEqual({ size: 3 * MIB + 17 });
    expect((await hashStream(await store.getStream('len/unknown'))).hash).toBe(src.digest());

    expect(await codeOf(store.putStream('len/short', generated(1000).stream, 2000))).toBe('bad_request');
    expect(await codeOf(store.putStream('len/long', generated(3000).stream, 2000))).toBe('bad_request');
    expect(await store.head('len/short')).toBeNull();
    expect(await store.head('len/long')).toBeNull();
  });

  it('head reports size and time; missing keys are null on head and typed not_found on get', async () => {
    const before = Date.now();
    await store.putBuffer('h/one', Buffer.alloc(1234, 7));
    const head = await store.head('h/one');
    expect(head?.size).toBe(1234);
    expect(head?.modified).toBeInstanceOf(Date);
    expect(Math.abs(head!.modified.getTime() - before)).toBeLessThan(60_000);
    expect(await store.head('h/missing')).toBeNull();
    expect(await store.head('h')).toBeNull(); // a "folder" is not an object
    expect(await codeOf(store.getBuffer('h/missing'))).toBe('not_found');
    expect(await codeOf(store.getStream('h/missing'))).toBe('not_found');
    expect(await codeOf(store.getBuffer('h'))).toBe('not_found');
  });

  it('lists by plain string prefix in key order, and deletes idempotently', async () => {
    const keys = ['l/b/2', 'l/a', 'l/b/1', 'l/bc/x', 'l/c', 'other/l'];
    for (const k of keys) await store.putBuffer(k, Buffer.from(k));
    expect(await listAll(store, 'l/')).toEqual([
      { key: 'l/a', size: 3 },
      { key: 'l/b/1', size: 5 },
      { key: 'l/b/2', size: 5 },
      { key: 'l/bc/x', size: 6 },
      { key: 'l/c', size: 3 },
    ]);
    expect((await listAll(store, 'l/b')).map((e) => e.key)).toEqual(['l/b/1', 'l/b/2', 'l/bc/x']);
    expect((await listAll(store, 'l/b/')).map((e) => e.key)).toEqual(['l/b/1', 'l/b/2']);
    expect(await listAll(store, 'nothing/')).toEqual([]);
    expect((await listAll(store, '')).map((e) => e.key)).toContain('other/l');

    await store.delete('l/b/1');
    await store.delete('l/b/1'); // again: fine
    await store.delete('never/was');
    expect(await store.head('l/b/1')).toBeNull();
    expect(await codeOf(store.getBuffer('l/b/1'))).toBe('not_found');
    expect(await deletePrefix(store, 'l/')).toBe(4);
    expect(await listAll(store, 'l/')).toEqual([]);
    expect((await store.getBuffer('other/l')).toString()).toBe('other/l');
  });

  it('concurrent writers of one key all succeed and leave one whole object (one writer’s bytes where the server replaces atomically)', async () => {
    const size = 2 * MIB + 3;
    const contents = Array.from({ length: 6 }, () => randomBytes(size));
    const hashes = new Set(contents.map((c) => createHash('sha256').update(c).digest('hex')));
    // Small chunks with yields between them so the writes really interleave.
    const slowly = (buf: Buffer) =>
      Readable.from(
        (async function* () {
          for (let i = 0; i < buf.length; i += 64 * 1024) {
            await new Promise((r) => setImmediate(r));
            yield buf.subarray(i, i + 64 * 1024);
          }
        })(),
      );
    await Promise.all(contents.map((c) => store.putStream('race/key', slowly(c), size)));
    const final = await store.getBuffer('race/key');
    expect(final.length).toBe(size);
    if (target.atomicOverwrite) expect(hashes.has(createHash('sha256').update(final).digest('hex'))).toBe(true);
    expect((await listAll(store, 'race/')).map((e) => e.key)).toEqual(['race/key']);
  });

  it('rejects malformed keys with bad_request before touching storage', async () => {
    const bad = ['', '/abs', '../up', 'a/../../b', 'a/./b', 'a//b', 'a/', 'back\\slash', 'nul\u0000byte', '.tmp/x', '.hidden', 'x'.repeat(1025)];
    for (const key of bad) {
      expect(await codeOf(store.putBuffer(key, Buffer.from('x'))), key).toBe('bad_request');
      expect(await codeOf(store.getBuffer(key)), key).toBe('bad_request');
    }
    expect(await codeOf(listAll(store, '../'))).toBe('bad_request');
  });

  it('answers ping', async () => {
    await expect(store.ping()).resolves.toBeUndefined();
  });
});
