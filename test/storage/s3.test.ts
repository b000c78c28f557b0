import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { AppError } from '../../src/errors.js';
import { listAll } from '../../src/storage/blob-store.js';
import { openBlobStore } from '../../src/storage/open.js';
import { S3BlobStore } from '../../src/storage/s3.js';
import { startS3, type TestS3 } from '../helpers/s3.js';

describe('S3 blob store specifics', () => {
  let s3: TestS3;
  beforeAll(async () => {
    s3 = await startS3();
  });
  afterAll(async () => {
    await s3?.stop();
  });

  it('keeps its objects under the configured prefix and strips it when listing', async () => {
    const prefixed = s3.makeStore({ prefix: 'tenant-data' });
    await prefixed.putBuffer('a/b', Buffer.from('1'));
    expect((await s3.store.getBuffer('tenant-data/a/b')).toString()).toBe('1');
    expect(await listAll(prefixed, 'a/')).toEqual([{ key: 'a/b', size: 1 }]);
    expect(await prefixed.head('tenant-data/a/b')).toBeNull();
  });

  it('follows list pagination across pages', async () => {
    const paged = s3.makeStore({ listPageSize: 2 });
    const keys = ['p/1', 'p/2', 'p/3', 'p/4', 'p/5'];
    for (const k of keys) await paged.putBuffer(k, Buffer.from(k));
    expect((await listAll(paged, 'p/')).map((e) => e.key)).toEqual(keys);
  });

  it('stores exactly the bytes streamed (no aws-chunked framing in the body)', async () => {
    const body = Buffer.from('plain bytes, nothing else');
    await s3.store.putStream('framing/x', [body] as unknown as AsyncIterable<Uint8Array>, body.length);
    expect((await s3.store.getBuffer('framing/x')).equals(body)).toBe(true);
  });

  it('a missing bucket or an unreachable server is storage_error, never not_found or a raw SDK error', async () => {
    const noBucket = s3.makeStore({ bucket: 'no-such-bucket' });
    const e1 = await noBucket.getBuffer('x').catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(AppError);
    expect((e1 as AppError).code).toBe('storage_error');
    await expect(noBucket.ping()).rejects.toMatchObject({ code: 'storage_error' });

    const down = new S3BlobStore({
      bucket: s3.bucket,
      endpoint: 'http://127.0.0.1:1',
      credentials: s3.credentials,
    });
    for (const op of [() => down.getBuffer('x'), () => down.putBuffer('x', Buffer.from('y')), () => down.head('x')]) {
      const err = await op().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AppError);
      expect((err as AppError).code).toBe('storage_error');
    }
    await down.close();
  });

  it('openBlobStore picks S3 when S3_BUCKET is set', async () => {
    process.env.AWS_ACCESS_KEY_ID ??= 'S3RVER';
    process.env.AWS_SECRET_ACCESS_KEY ??= 'S3RVER';
    const store = await openBlobStore(loadConfig({ S3_BUCKET: s3.bucket, S3_ENDPOINT: s3.endpoint, S3_PREFIX: 'via-config' }));
    expect(store.kind).toBe('s3');
    await store.putBuffer('k', Buffer.from('v'));
    expect((await s3.store.getBuffer('via-config/k')).toString()).toBe('v');
    await store.ping();
    await store.close();
  });
});
