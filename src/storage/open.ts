/** Picks the blob store the config names: S3 when S3_BUCKET is set, else a folder on disk. */
import type { Config } from '../config.js';
import type { BlobStore } from './blob-store.js';
import { DiskBlobStore } from './disk.js';
import { S3BlobStore } from './s3.js';

export type BlobStoreConfig = Pick<
  Config,
  'S3_BUCKET' | 'S3_ENDPOINT' | 'S3_REGION' | 'S3_PREFIX' | 'S3_FORCE_PATH_STYLE'
> & { paths: Pick<Config['paths'], 'blobDir'> };

export async function openBlobStore(config: BlobStoreConfig): Promise<BlobStore> {
  if (config.S3_BUCKET !== undefined) {
    return new S3BlobStore({
      bucket: config.S3_BUCKET,
      endpoint: config.S3_ENDPOINT,
      region: config.S3_REGION,
      prefix: config.S3_PREFIX,
      forcePathStyle: config.S3_FORCE_PATH_STYLE,
    });
  }
  return DiskBlobStore.open({ root: config.paths.blobDir });
}
