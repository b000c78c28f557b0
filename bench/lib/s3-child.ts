/**
 * An S3 endpoint (s3rver) in a process of its own, for benchmarks that time S3 requests: an
 * in-process server would handle its requests on the measuring process's event loop, so its
 * stalls and the client's would add up in ways no real S3 endpoint causes. The store returned
 * talks to it the way production does (S3BlobStore, path style).
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { S3BlobStore } from '../../src/storage/s3.js';
import { startS3 } from '../../test/helpers/s3.js';

interface Ready {
  endpoint: string;
  bucket: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
}

export async function startS3InChild(): Promise<{ store: S3BlobStore; stop(): Promise<void> }> {
  const child = fork(fileURLToPath(import.meta.url), ['--serve'], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const ready = await new Promise<Ready>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`s3rver child exited with ${code}`)));
    child.once('message', (m: Ready) => resolve(m));
  });
  child.removeAllListeners('exit');
  const store = new S3BlobStore({ bucket: ready.bucket, endpoint: ready.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: ready.credentials });
  return {
    store,
    async stop() {
      await store.close();
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.send('stop');
      await exited;
    },
  };
}

async function serve(): Promise<void> {
  const s3 = await startS3();
  process.on('message', (m) => {
    if (m === 'stop') void s3.stop().finally(() => process.exit(0));
  });
  process.send!({ endpoint: s3.endpoint, bucket: s3.bucket, credentials: s3.credentials } satisfies Ready);
}

if (process.argv.includes('--serve')) void serve();
