/**
 * An in-process S3 server (s3rver) for tests, with a blob store configured against it the way
 * production would be (path style, WHEN_REQUIRED checksums). Its ListObjectsV2 pagination needs
 * NODE_OPTIONS=--openssl-legacy-provider, which vitest.config.ts sets.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { S3BlobStore, type S3BlobStoreOptions } from '../../src/storage/s3.js';
import { makeTempDir } from './db.js';

interface S3rverInstance {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
  httpServer?: import('node:http').Server;
}
type S3rverCtor = new (options: Record<string, unknown>) => S3rverInstance;

const require = createRequire(import.meta.url);

export interface TestS3 {
  endpoint: string;
  bucket: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  /** A store on the bucket (close it or call stop()). */
  store: S3BlobStore;
  /** Another store on the same server, e.g. with a prefix or a different bucket name. */
  makeStore(options?: Partial<S3BlobStoreOptions>): S3BlobStore;
  /** An outage: the server stops listening and drops open connections; its objects are kept. */
  down(): Promise<void>;
  /** The end of the outage: the server listens again on the same port, with the same objects. */
  up(): Promise<void>;
  stop(): Promise<void>;
}

export async function startS3(options: { bucket?: string; prefix?: string } = {}): Promise<TestS3> {
  const S3rver = require('s3rver') as S3rverCtor;
  const bucket = options.bucket ?? `test-${randomBytes(4).toString('hex')}`;
  // s3rver's reset on close expects its folder to exist.
  const directory = await makeTempDir('dtl-s3rver');
  const make = (port: number) =>
    new S3rver({
      address: '127.0.0.1',
      port,
      silent: true,
      directory,
      // The folder is removed by stop(); keeping objects on close lets down()/up() model an outage.
      resetOnClose: false,
      configureBuckets: [{ name: bucket, configs: [] }],
    });
  let server: S3rverInstance | undefined = make(0);
  const addr = await server.run();
  const endpoint = `http://127.0.0.1:${addr.port}`;
  const close = async () => {
    const running = server;
    server = undefined;
    if (running === undefined) return;
    running.httpServer?.closeAllConnections();
    await running.close();
  };
  const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
  const stores: S3BlobStore[] = [];
  const makeStore = (o: Partial<S3BlobStoreOptions> = {}) => {
    const s = new S3BlobStore({ bucket, endpoint, region: 'us-east-1', forcePathStyle: true, credentials, ...o });
    stores.push(s);
    return s;
  };
  const store = makeStore({ prefix: options.prefix });
  return {
    endpoint,
    bucket,
    credentials,
    store,
    makeStore,
    down: close,
    up: async () => {
      if (server !== undefined) return;
      server = make(addr.port);
      await server.run();
    },
    stop: async () => {
      for (const s of stores) await s.close();
      await close();
      await fs.rm(directory, { recursive: true, force: true });
    },
  };
}
