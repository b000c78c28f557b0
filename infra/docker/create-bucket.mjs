// Creates the S3 bucket the service is configured with, if missing (compose's `minio-init`).
// Reads the same environment as the service, through its own config schema, so a bucket name or
// endpoint that the service would reject fails here first. Waits for the store to answer.
// usage: node --import tsx infra/docker/create-bucket.mjs [--timeout-ms N]   (default 60000)
// exit: 0 bucket exists (created or already there), 1 store unreachable/refused, 2 bad config.
import { CreateBucketCommand, HeadBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { loadConfig } from '../../src/config.ts';

const flag = process.argv.indexOf('--timeout-ms');
const timeoutMs = flag > 0 ? Number(process.argv[flag + 1]) : 60_000;

let config;
try {
  config = loadConfig();
} catch (err) {
  console.error(`create-bucket: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(2);
}
const bucket = config.S3_BUCKET;
if (bucket === undefined) {
  console.error('create-bucket: S3_BUCKET is not set');
  process.exit(2);
}

const s3 = new S3Client({
  endpoint: config.S3_ENDPOINT,
  region: config.S3_REGION,
  forcePathStyle: config.S3_FORCE_PATH_STYLE,
  // Non-AWS stores mishandle the SDK's default checksums (see the storage notes).
  requestChecksumCalculation: 'WHEN_REQUIRED',
  responseChecksumValidation: 'WHEN_REQUIRED',
  maxAttempts: 1,
});

const status = (err) => err?.$metadata?.httpStatusCode;
const deadline = Date.now() + timeoutMs;
let lastError = 'no attempt';
while (Date.now() < deadline) {
  try {
    await s3.send(new HeadBucketCommand({ Bucket: bucket }));
    console.log(`create-bucket: ${bucket} exists`);
    process.exit(0);
  } catch (err) {
    if (status(err) === 404) {
      try {
        await s3.send(new CreateBucketCommand({ Bucket: bucket }));
        console.log(`create-bucket: created ${bucket}`);
        process.exit(0);
      } catch (createErr) {
        // Another init container won the race: the bucket is there, which is all we want.
        if (createErr?.name === 'BucketAlreadyOwnedByYou') process.exit(0);
        lastError = createErr instanceof Error ? createErr.message : String(createErr);
        if (status(createErr) !== undefined && status(createErr) < 500) break;
      }
    } else {
      lastError = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
      // 401/403: wrong credentials will not fix themselves.
      if (status(err) === 401 || status(err) === 403) break;
    }
  }
  await new Promise((resolve) => setTimeout(resolve, 500));
}
console.error(`create-bucket: gave up on ${bucket} at ${config.S3_ENDPOINT ?? 'AWS'}: ${lastError}`);
process.exit(1);
