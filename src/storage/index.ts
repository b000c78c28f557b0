export * from './blob-store.js';
export { DiskBlobStore, type DiskBlobStoreOptions } from './disk.js';
export { S3BlobStore, type S3BlobStoreOptions } from './s3.js';
export { openBlobStore, type BlobStoreConfig } from './open.js';
