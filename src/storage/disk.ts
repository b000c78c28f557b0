/**
 * Blob store on a local folder. Writes go to a temp file in `<root>/.tmp` and are renamed into
 * place, so readers and concurrent writers only ever see whole objects (last rename wins). Keys
 * are validated and the resolved path re-checked to lie under the root.
 *
 * Disk-only limitation: a key cannot also be a "folder" of other keys ('a' and 'a/b'); such a
 * write fails with 'conflict'.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { AppError, notFound } from '../errors.js';
import {
  sizeMismatch,
  validateKey,
  validatePrefix,
  type BlobEntry,
  type BlobHead,
  type BlobSource,
  type BlobStore,
} from './blob-store.js';

const TMP = '.tmp';
const STALE_TMP_MS = 60 * 60 * 1000;

export interface DiskBlobStoreOptions {
  root: string;
  /** fsync files and folders on write (default true): a put that returned survives a crash. */
  fsync?: boolean;
}

type Errno = NodeJS.ErrnoException;
const codeOf = (err: unknown) => (err as Errno | undefined)?.code;

export class DiskBlobStore implements BlobStore {
  readonly kind = 'disk' as const;
  readonly root: string;
  private readonly fsync: boolean;

  private constructor(root: string, fsync: boolean) {
    this.root = root;
    this.fsync = fsync;
  }

  /** Creates the root (and its temp folder) and clears temp files left by crashed writers. */
  static async open(options: DiskBlobStoreOptions): Promise<DiskBlobStore> {
    const root = path.resolve(options.root);
    await fs.mkdir(path.join(root, TMP), { recursive: true });
    const store = new DiskBlobStore(root, options.fsync ?? true);
    await store.sweepTemp();
    return store;
  }

  private async sweepTemp(): Promise<void> {
    const dir = path.join(this.root, TMP);
    for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
      const file = path.join(dir, name);
      const st = await fs.stat(file).catch(() => undefined);
      if (st !== undefined && Date.now() - st.mtimeMs > STALE_TMP_MS) await fs.rm(file, { force: true });
    }
  }

  private pathOf(key: string): string {
    validateKey(key);
    const full = path.resolve(this.root, ...key.split('/'));
    // Belt and braces: validation already forbids '..', but never trust one check with the disk.
    if (!full.startsWith(this.root + path.sep)) throw new AppError('bad_request', `invalid blob key '${key}': escapes the store`);
    return full;
  }

  private fail(op: string, key: string, err: unknown): AppError {
    if (err instanceof AppError) return err;
    const code = codeOf(err);
    if (op === 'put' && (code === 'EISDIR' || code === 'ENOTDIR' || code === 'EEXIST')) {
      return new AppError('conflict', `blob '${key}': a key and a key prefix collide on disk`, { cause: err });
    }
    if (code === 'ENOENT' || code === 'EISDIR' || code === 'ENOTDIR') return notFound('blob', key);
    return new AppError('storage_error', `disk blob store: ${op} '${key}' failed: ${(err as Error).message}`, { cause: err });
  }

  async putBuffer(key: string, data: Uint8Array): Promise<{ size: number }> {
    return this.write(key, [data], data.byteLength);
  }

  async putStream(key: string, source: BlobSource, size?: number): Promise<{ size: number }> {
    return this.write(key, source, size);
  }

  private async write(key: string, source: Iterable<Uint8Array> | AsyncIterable<Uint8Array>, size?: number) {
    const final = this.pathOf(key);
    const tmp = path.join(this.root, TMP, `${randomBytes(12).toString('hex')}`);
    let written = 0;
    try {
      const fh = await fs.open(tmp, 'wx');
      try {
        for await (const chunk of source) {
          const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
          written += buf.byteLength;
          if (size !== undefined && written > size) throw sizeMismatch(key, size, written);
          await fh.write(buf);
        }
        if (size !== undefined && written !== size) throw sizeMismatch(key, size, written);
        if (this.fsync) await fh.sync();
      } finally {
        await fh.close();
      }
      await this.renameIntoPlace(tmp, final);
      return { size: written };
    } catch (err) {
      await fs.rm(tmp, { force: true });
      throw this.fail('put', key, err);
    }
  }

  private async renameIntoPlace(tmp: string, final: string): Promise<void> {
    const dir = path.dirname(final);
    // A concurrent delete may prune the folder between mkdir and rename; try again then.
    for (let attempt = 0; ; attempt++) {
      await fs.mkdir(dir, { recursive: true });
      try {
        await fs.rename(tmp, final);
        break;
      } catch (err) {
        if (codeOf(err) !== 'ENOENT' || attempt >= 3) throw err;
      }
    }
    if (this.fsync) {
      const dh = await fs.open(dir, 'r');
      try {
        await dh.sync();
      } finally {
        await dh.close();
      }
    }
  }

  async getStream(key: string): Promise<Readable> {
    const file = this.pathOf(key);
    // Open first so a missing key fails here, typed; the open descriptor keeps reading the object
    // it opened even if a writer replaces it meanwhile.
    let fh: fs.FileHandle;
    try {
      fh = await fs.open(file, 'r');
      const st = await fh.stat();
      if (st.isDirectory()) {
        await fh.close();
        throw notFound('blob', key);
      }
    } catch (err) {
      throw this.fail('get', key, err);
    }
    return fh.createReadStream();
  }

  async getBuffer(key: string): Promise<Buffer> {
    try {
      return await fs.readFile(this.pathOf(key));
    } catch (err) {
      throw this.fail('get', key, err);
    }
  }

  async head(key: string): Promise<BlobHead | null> {
    const file = this.pathOf(key);
    try {
      const st = await fs.stat(file);
      if (!st.isFile()) return null;
      return { size: st.size, modified: st.mtime };
    } catch (err) {
      const code = codeOf(err);
      if (code === 'ENOENT' || code === 'ENOTDIR') return null;
      throw this.fail('head', key, err);
    }
  }

  async delete(key: string): Promise<void> {
    const file = this.pathOf(key);
    try {
      await fs.unlink(file);
    } catch (err) {
      const code = codeOf(err);
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR' || code === 'EPERM') return;
      throw this.fail('delete', key, err);
    }
    // Prune folders left empty, so deleted data sets leave no trail of empty directories.
    let dir = path.dirname(file);
    while (dir !== this.root && dir.startsWith(this.root + path.sep)) {
      try {
        await fs.rmdir(dir);
      } catch {
        break; // not empty (or gone): stop
      }
      dir = path.dirname(dir);
    }
  }

  async *list(prefix: string): AsyncIterable<BlobEntry> {
    validatePrefix(prefix);
    const dirPart = prefix.slice(0, prefix.lastIndexOf('/') + 1);
    const start = dirPart === '' ? this.root : this.pathOf(dirPart.slice(0, -1));
    const found: BlobEntry[] = [];
    const walk = async (dir: string, keyPrefix: string): Promise<void> => {
      let entries: import('node:fs').Dirent[];
      try {
        entries = await fs.readdir(dir, { withFileTypes: true });
      } catch (err) {
        const code = codeOf(err);
        if (code === 'ENOENT' || code === 'ENOTDIR') return;
        throw this.fail('list', prefix, err);
      }
      for (const e of entries) {
        if (keyPrefix === '' && e.name.startsWith('.')) continue;
        const key = keyPrefix + e.name;
        if (e.isDirectory()) {
          if ((key + '/').startsWith(prefix) || prefix.startsWith(key + '/')) await walk(path.join(dir, e.name), key + '/');
        } else if (e.isFile() && key.startsWith(prefix)) {
          const st = await fs.stat(path.join(dir, e.name)).catch(() => undefined);
          if (st !== undefined) found.push({ key, size: st.size });
        }
      }
    };
    await walk(start, dirPart);
    // S3 lists in UTF-8 byte order; match it so callers see one order from both stores.
    found.sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)));
    yield* found;
  }

  async ping(): Promise<void> {
    try {
      await fs.access(path.join(this.root, TMP), fs.constants.W_OK);
    } catch (err) {
      throw new AppError('storage_error', `disk blob store at ${this.root} is not writable`, { cause: err });
    }
  }

  async close(): Promise<void> {}
}
