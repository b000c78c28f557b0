/**
 * Blob store on S3 or any S3-protocol server. Settings the stack notes found necessary for
 * non-AWS endpoints: path-style addressing, and checksums only when required (with the SDK
 * defaults a streamed PutObject stored the aws-chunked framing as the object body). Streams go
 * through lib-storage's Upload: one PutObject when small, multipart beyond one part.
 */
import { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { AppError, notFound } from '../errors.js';
import {
  sizeMismatch,
  validateKey,
  validatePrefix,
  type BlobEntry,
  type BlobHead,
  type BlobSource,
  type BlobStore,
  type PutOptions,
} from './blob-store.js';

export interface S3BlobStoreOptions {
  bucket: string;
  region?: string;
  endpoint?: string;
  /** Key prefix inside the bucket ('' or e.g. 'dtl/'; a missing trailing '/' is added). */
  prefix?: string;
  forcePathStyle?: boolean;
  /** Explicit credentials (tests); otherwise the standard AWS provider chain. */
  credentials?: S3ClientConfig['credentials'];
  /** Multipart part size (default 8 MiB; S3's minimum is 5 MiB). */
  partSize?: number;
  /** Parts uploaded at once (default 4): memory use is about partSize × queueSize. */
  queueSize?: number;
  /** Keys per ListObjectsV2 page (default: the server's, 1000). */
  listPageSize?: number;
}

const MIB = 1024 * 1024;

function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } } | undefined;
  if (e?.name === 'NoSuchBucket') return false; // a configuration fault, not a missing object
  return e?.name === 'NoSuchKey' || e?.name === 'NotFound' || e?.$metadata?.httpStatusCode === 404;
}

/** Find an AppError we threw ourselves (e.g. a size mismatch) inside whatever the SDK wrapped it in. */
function ownError(err: unknown): AppError | undefined {
  let cur: unknown = err;
  for (let i = 0; i < 4 && cur !== null && typeof cur === 'object'; i++) {
    if (cur instanceof AppError) return cur;
    cur = (cur as { cause?: unknown }).cause;
  }
  return undefined;
}

export class S3BlobStore implements BlobStore {
  readonly kind = 's3' as const;
  readonly bucket: string;
  readonly prefix: string;
  private readonly client: S3Client;
  private readonly partSize: number;
  private readonly queueSize: number;
  private readonly listPageSize: number | undefined;

  constructor(options: S3BlobStoreOptions) {
    this.bucket = options.bucket;
    const p = options.prefix ?? '';
    this.prefix = p === '' || p.endsWith('/') ? p : `${p}/`;
    this.partSize = Math.max(5 * MIB, options.partSize ?? 8 * MIB);
    this.queueSize = Math.max(1, options.queueSize ?? 4);
    this.listPageSize = options.listPageSize;
    this.client = new S3Client({
      region: options.region ?? 'us-east-1',
      endpoint: options.endpoint,
      forcePathStyle: options.forcePathStyle ?? true,
      credentials: options.credentials,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: { connectionTimeout: 10_000, requestTimeout: 120_000 },
    });
  }

  private fullKey(key: string): string {
    return this.prefix + validateKey(key);
  }

  private fail(op: string, key: string, err: unknown): AppError {
    const own = ownError(err);
    if (own !== undefined) return own;
    if (isNotFound(err)) return notFound('blob', key);
    const e = err as { name?: string; message?: string };
    return new AppError('storage_error', `S3 ${op} '${key}' in bucket '${this.bucket}' failed: ${e.name ?? ''} ${e.message ?? String(err)}`.trim(), {
      cause: err,
    });
  }

  async putBuffer(key: string, data: Uint8Array, opts: PutOptions = {}): Promise<{ size: number }> {
    const Key = this.fullKey(key);
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key,
          Body: data,
          ContentLength: data.byteLength,
          ContentType: opts.contentType ?? 'application/octet-stream',
        }),
      );
      return { size: data.byteLength };
    } catch (err) {
      throw this.fail('put', key, err);
    }
  }

  async putStream(key: string, source: BlobSource, size?: number, opts: PutOptions = {}): Promise<{ size: number }> {
    const Key = this.fullKey(key);
    let count = 0;
    // Count (and bound) the bytes on the way through; throwing here aborts the upload before it
    // completes, so a short or long stream stores nothing.
    async function* counted(): AsyncGenerator<Uint8Array> {
      for await (const chunk of source) {
        const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
        count += buf.byteLength;
        if (size !== undefined && count > size) throw sizeMismatch(key, size, count);
        yield buf;
      }
      if (size !== undefined && count !== size) throw sizeMismatch(key, size, count);
    }
    const body = Readable.from(counted(), { objectMode: false });
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key, Body: body, ContentType: opts.contentType ?? 'application/octet-stream' },
      partSize: this.partSize,
      queueSize: this.queueSize,
      leavePartsOnError: false,
    });
    try {
      await upload.done();
      return { size: count };
    } catch (err) {
      body.destroy();
      throw this.fail('put', key, err);
    }
  }

  async getStream(key: string): Promise<Readable> {
    const Key = this.fullKey(key);
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key }));
      if (out.Body === undefined) throw new Error('empty response body');
      return out.Body as Readable;
    } catch (err) {
      throw this.fail('get', key, err);
    }
  }

  async getBuffer(key: string): Promise<Buffer> {
    const Key = this.fullKey(key);
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key }));
      if (out.Body === undefined) throw new Error('empty response body');
      return Buffer.from(await out.Body.transformToByteArray());
    } catch (err) {
      throw this.fail('get', key, err);
    }
  }

  async head(key: string): Promise<BlobHead | null> {
    const Key = this.fullKey(key);
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }));
      return {
        size: out.ContentLength ?? 0,
        etag: out.ETag?.replace(/"/g, ''),
        modified: out.LastModified ?? new Date(0),
      };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw this.fail('head', key, err);
    }
  }

  async delete(key: string): Promise<void> {
    const Key = this.fullKey(key);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key }));
    } catch (err) {
      if (isNotFound(err)) return;
      throw this.fail('delete', key, err);
    }
  }

  async *list(prefix: string): AsyncIterable<BlobEntry> {
    validatePrefix(prefix);
    let token: string | undefined;
    do {
      let page;
      try {
        page = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: this.prefix + prefix,
            ContinuationToken: token,
            MaxKeys: this.listPageSize,
          }),
        );
      } catch (err) {
        throw this.fail('list', prefix, err);
      }
      for (const obj of page.Contents ?? []) {
        if (obj.Key === undefined) continue;
        yield { key: obj.Key.slice(this.prefix.length), size: obj.Size ?? 0 };
      }
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  async ping(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
    } catch (err) {
      throw new AppError('storage_error', `S3 bucket '${this.bucket}': ${pingFailure(err)}`, { cause: err });
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}

/** Why HeadBucket failed, in words an operator can act on (it is logged at start and shown by /readyz). */
function pingFailure(err: unknown): string {
  const e = err as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  const status = e.$metadata?.httpStatusCode;
  if (e.name === 'CredentialsProviderError') {
    return 'no credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or another source of the AWS default chain)';
  }
  if (status === 404 || e.name === 'NotFound' || e.name === 'NoSuchBucket') {
    return 'does not exist (create it, e.g. with infra/docker/create-bucket.mjs)';
  }
  if (status === 403 || status === 401) return `access denied (HTTP ${status}): check the credentials and the bucket policy`;
  if (status !== undefined) return `not usable: HTTP ${status} (${e.name ?? 'error'})`;
  return `not reachable: ${e.name ?? 'error'}${e.message ? ` (${e.message.split('\n')[0].slice(0, 120)})` : ''}`;
}
