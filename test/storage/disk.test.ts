import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors.js';
import { DiskBlobStore } from '../../src/storage/disk.js';
import { openBlobStore } from '../../src/storage/open.js';
import { loadConfig } from '../../src/config.js';
import { makeTempDir } from '../helpers/db.js';

describe('disk blob store', () => {
  let base: string;
  let root: string;
  let store: DiskBlobStore;
  beforeAll(async () => {
    base = await makeTempDir('dtl-disk');
    root = path.join(base, 'store');
    store = await DiskBlobStore.open({ root });
  });
  afterAll(async () => {
    await fs.rm(base, { recursive: true, force: true });
  });

  it('no key escapes the root, however it is spelled', async () => {
    await fs.writeFile(path.join(base, 'outside'), 'secret');
    const attempts = ['../outside', '../store2/x', 'a/../../outside', '%2e%2e/outside', 'a/..', '..', '/etc/passwd', '..\\outside'];
    for (const key of attempts) {
      const err = await store.putBuffer(key, Buffer.from('pwned')).catch((e: unknown) => e);
      if (err instanceof AppError) {
        expect(err.code, key).toBe('bad_request');
      } else {
        // Only a harmless literal name may be accepted ('%2e%2e' is not '..'); it must land inside.
        expect(key).toBe('%2e%2e/outside');
        await fs.stat(path.join(root, '%2e%2e', 'outside'));
      }
    }
    expect(await fs.readFile(path.join(base, 'outside'), 'utf8')).toBe('secret');
    expect((await fs.readdir(base)).sort()).toEqual(['outside', 'store']);
  });

  it('writes atomically: no temp files stay behind, and delete prunes empty folders', async () => {
    await store.putBuffer('d/e/f/g', Buffer.from('x'));
    expect(await fs.readdir(path.join(root, '.tmp'))).toEqual([]);
    await store.delete('d/e/f/g');
    await expect(fs.stat(path.join(root, 'd'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('a failed stream leaves neither the object nor a temp file', async () => {
    async function* broken() {
      yield Buffer.from('partial');
      throw new Error('client went away');
    }
    await expect(store.putStream('broken/obj', broken())).rejects.toThrow();
    expect(await store.head('broken/obj')).toBeNull();
    expect(await fs.readdir(path.join(root, '.tmp'))).toEqual([]);
  });

  it('a key that is also a prefix of other keys is a conflict on disk', async () => {
    await store.putBuffer('k/child', Buffer.from('x'));
    const err = await store.putBuffer('k', Buffer.from('y')).catch((e: unknown) => e);
    expect((err as AppError).code).toBe('conflict');
  });

  it('openBlobStore picks disk without S3_BUCKET and creates its folder', async () => {
    const dataDir = path.join(base, 'fresh', 'data');
    const opened = await openBlobStore(loadConfig({ DATA_DIR: dataDir }));
    expect(opened.kind).toBe('disk');
    await opened.putBuffer('x/y', Buffer.from('z'));
    expect(await fs.readFile(path.join(dataDir, 'blobs', 'x', 'y'), 'utf8')).toBe('z');
  });
});
