/**
 * The one place configuration is read. Everything else receives a typed `Config` object; nothing
 * else touches process.env. The README's configuration table mirrors CONFIG_DOCS below; a test
 * checks they agree.
 */
import path from 'node:path';
import { z } from 'zod';
import { AppError } from './errors.js';

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');
const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.coerce.number().int().min(min).max(max);

export const configSchema = z.object({
  HOST: z.string().default('0.0.0.0'),
  PORT: int(0, 65535).default(8080),
  LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  DATA_DIR: z.string().min(1).default('./data'),
  DATABASE_URL: z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL').optional(),
  BLOB_DIR: z.string().min(1).optional(),
  S3_BUCKET: z.string().min(1).optional(),
  S3_ENDPOINT: z.url().optional(),
  S3_REGION: z.string().min(1).default('us-east-1'),
  S3_PREFIX: z.string().default(''),
  S3_FORCE_PATH_STYLE: bool.default(true),
  TFJS_BACKEND: z.enum(['auto', 'tensorflow', 'wasm', 'cpu']).default('auto'),
  BACKBONE_ENGINE: z.enum(['auto', 'onnxruntime', 'tfjs']).default('auto'),
  ENGINE_THREADS: int(1, 1024).optional(),
  ENGINE_PROVIDER: z.enum(['cpu', 'cuda', 'tensorrt']).default('cpu'),
  ENGINE_SPIN_WAIT: bool.default(false),
  ENGINE_WEIGHTS_DIR: z.string().min(1).optional(),
  BACKBONE: z.string().min(1).default('backbones/default'),
  BACKBONE_IMAGE_SIZE: int(8, 4096).optional(),
  HF_ENDPOINT: z.url().default('https://huggingface.co'),
  HF_TOKEN: z.string().min(1).optional(),
  ADMIN_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  WORKER_ENABLED: bool.default(true),
  WORKER_CONCURRENCY: int(1, 64).default(1),
  JOB_LEASE_MS: int(1000).default(30_000),
  JOB_MAX_ATTEMPTS: int(1, 100).default(3),
  ADAPTER_CACHE_BYTES: int(1024).default(256 * 1024 * 1024),
  SERVE_PRECISION: z.enum(['compact', 'float16', 'float32']).default('compact'),
  BATCH_MAX_SIZE: int(1, 1024).default(32),
  BATCH_MAX_WAIT_MS: int(0, 10_000).default(0),
  SERVE_WORKERS: int(0, 256).default(1),
  SERVE_WORKER_NICE: int(0, 19).default(10),
  QUEUE_MAX_TOTAL: int(1).default(1024),
  QUEUE_MAX_PER_TENANT: int(1).default(128),
  REQUEST_DEADLINE_MS: int(10).default(30_000),
  PREFIX_CACHE_BYTES: int(0).default(0),
  TRAIN_CACHE_BYTES: int(0).default(1024 * 1024 * 1024),
  UPLOAD_MAX_BYTES: int(1024).default(512 * 1024 * 1024),
  CLASSIFY_MAX_BYTES: int(1024).default(32 * 1024 * 1024),
  IMAGE_MAX_PIXELS: int(1).default(40_000_000),
  INGEST_MAX_INFLATED_BYTES: int(1024).default(2 * 1024 * 1024 * 1024),
  INGEST_TENANT_BYTES: int(1024).default(4 * 1024 * 1024 * 1024),
  INGEST_TENANT_ENTRIES: int(1).default(400_000),
  DATASET_LEASE_MS: int(1000).default(60_000),
  RATE_LIMIT_RPS: z.coerce.number().positive().default(50),
  RATE_LIMIT_BURST: int(1).default(100),
  AUTH_CACHE_TTL_MS: int(0).default(5_000),
  QUOTA_ADAPTERS: int(0).default(1000),
  QUOTA_DATASETS: int(0).default(100),
  QUOTA_BYTES: int(0).default(10 * 1024 * 1024 * 1024),
  SHUTDOWN_TIMEOUT_MS: int(0).default(30_000),
  HTTP_HEADERS_TIMEOUT_MS: int(1000).default(20_000),
  HTTP_REQUEST_TIMEOUT_MS: int(0).default(600_000),
  HTTP_BODY_IDLE_TIMEOUT_MS: int(0).default(30_000),
  HTTP_KEEP_ALIVE_TIMEOUT_MS: int(1000).default(65_000),
  HTTP_DISCARD_MAX_BYTES: int(0).default(64 * 1024 * 1024),
  HTTP_DISCARD_MAX_MS: int(0).default(5_000),
  UPLOADS_PER_TENANT: int(1).default(2),
  SWEEP_INTERVAL_MS: int(0).default(60 * 60 * 1000),
  SWEEP_GRACE_MS: int(60_000).default(60 * 60 * 1000),
  PUBLIC_URL: z.url().optional(),
  IDEMPOTENCY_TTL_MS: int(60_000).default(24 * 60 * 60 * 1000),
  METRICS_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  METRICS_TENANT_LABELS: bool.default(false),
});

export type Config = z.infer<typeof configSchema> & {
  /** Resolved absolute paths derived from the raw settings. */
  paths: { dataDir: string; blobDir: string; pgliteDir: string; /** undefined: ENGINE_WEIGHTS_DIR=off */ engineWeightsDir: string | undefined };
};

/** One line per variable: the README table is generated from / checked against this. */
export const CONFIG_DOCS: Record<keyof z.infer<typeof configSchema>, string> = {
  HOST: 'Interface the HTTP server binds to.',
  PORT: 'HTTP port (0 picks a free one).',
  LOG_LEVEL: 'pino log level.',
  DATA_DIR: 'Local state: embedded PGlite database, disk blob store, lock file.',
  DATABASE_URL: 'PostgreSQL URL. Unset → embedded PGlite in `DATA_DIR/pglite`.',
  BLOB_DIR: 'Disk blob store root when no S3 bucket is set. Default `DATA_DIR/blobs`.',
  S3_BUCKET: 'Use S3 (any S3-protocol endpoint) for blobs. Credentials come from the standard AWS chain.',
  S3_ENDPOINT: 'S3 endpoint URL for non-AWS stores (MinIO, Ceph, R2, …).',
  S3_REGION: 'S3 region.',
  S3_PREFIX: 'Key prefix inside the bucket.',
  S3_FORCE_PATH_STYLE: 'Path-style addressing (needed by most non-AWS stores).',
  TFJS_BACKEND: '`auto` tries tfjs-node-gpu → tfjs-node → wasm → cpu; or force one.',
  BACKBONE: 'The backbone: a local folder (Hugging Face or timm ViT layout), `blob:<key prefix>` in the blob store, or `hf:<org>/<name>[@revision]` — pulled once from the model hub at `HF_ENDPOINT` into the blob store (`backbones/`), then read from there.',
  BACKBONE_IMAGE_SIZE: 'Run the backbone at this input size (a multiple of its patch size): images are resized to it and the position embeddings interpolated (bicubic, as the checkpoint\'s library does: Hugging Face `interpolate_pos_encoding`, timm `resample_abs_pos_embed` for timm and `.npz`; a Swin as Hugging Face\'s `SwinModel` runs it, grids padded to whole windows). Unset: the size `preprocessor_config.json` names, else the checkpoint\'s own.',
  HF_ENDPOINT: 'Model hub for `BACKBONE=hf:…` and `dtl-host backbone pull` (a Hugging Face mirror serving `/<org>/<name>/resolve/<revision>/<file>` works too).',
  HF_TOKEN: 'Token sent to `HF_ENDPOINT` (never to the CDN it redirects to) for gated or private repositories.',
  BACKBONE_ENGINE: 'Engine of the frozen backbone\'s forward (serving, and the training prefix fill): `auto` uses onnxruntime-node when it loads, else tfjs (logged at start); `onnxruntime` fails start-up when it cannot load; `tfjs` never tries it. Adapters and gradients always run on tfjs.',
  ENGINE_THREADS: 'onnxruntime intra-op threads. Unset → the cores this process may run on (its CPU affinity, capped by a cgroup CPU quota).',
  ENGINE_SPIN_WAIT: 'Whether onnxruntime\'s intra-op threads spin between operators instead of sleeping. Off: on a node where other threads (HTTP, other executors, training) share the cores, spinning threads starved them (bench P7: a batch-1 classify on the bundled backbone took 14 ms with spinning, 4.8 ms without; P12 on a loaded machine: 9 vs 45 images/s). On may win a little on a node whose cores only this engine uses.',
  ENGINE_WEIGHTS_DIR: 'Folder of the frozen backbone\'s weights as files that onnxruntime memory-maps (written once per backbone and image size, ≈ the checkpoint\'s float32 size: 327 MB for ViT-B/16): one copy in the page cache shared by every session, executor thread, training step and process on the node, instead of a copy in each (bench P11). Default `DATA_DIR/engine-weights`; `off` keeps the weights in onnxruntime\'s memory. A folder that cannot be written is logged and treated as `off`.',
  ENGINE_PROVIDER: 'onnxruntime execution provider: `cpu`, or `cuda` / `tensorrt` on GPU nodes with the provider libraries installed (README, GPU nodes); onnxruntime falls back to the CPU for what they do not run.',
  ADMIN_TOKEN: 'Bearer token for tenant administration. Unset → admin routes are disabled.',
  WORKER_ENABLED: 'Run a training worker inside `npm start`.',
  WORKER_CONCURRENCY: 'Training jobs run at once per process.',
  JOB_LEASE_MS: 'Job lease length; a worker heartbeats at a third of it (training computes in a thread, so heartbeats run however long a batch takes).',
  JOB_MAX_ATTEMPTS: 'Attempts before a job is marked failed.',
  ADAPTER_CACHE_BYTES: 'Byte budget for resident adapters (LRU), counted as what each one holds in the process (weights + its JS objects).',
  SERVE_PRECISION: 'How resident adapters hold their weights between batches: `compact` (float16, the head weight as 12-bit integers with a float16 scale per 32: ≈ 0.44× float32 at 100 classes), `float16` (0.5×) or `float32` (exact). compact and float16 give logits within 1e-3 relative of float32 and the same top-1 on the golden fixtures (errors measured in src/model/README.md). A batch always computes in float32; adapter files are unchanged.',
  BATCH_MAX_SIZE: 'Most images in one serving micro-batch.',
  BATCH_MAX_WAIT_MS: 'Longest a request waits for company when an executor is idle. 0 = continuous batching: a batch starts as soon as an executor is idle, and the next fills while it runs.',
  SERVE_WORKER_NICE: 'Nice value of the serving executor threads (Linux: per thread; onnxruntime threads they start inherit it): computing yields the CPU to the thread that answers HTTP and health probes, and still gets every core when that one is idle. Relative to other processes on a shared host it is a lower priority too. 0 = as the process.',
  SERVE_WORKERS: 'Serving executor threads: each owns a copy of the backbone and its own adapter and prefix caches (ADAPTER_CACHE_BYTES and PREFIX_CACHE_BYTES are split between them) and runs one batch at a time; a thread that dies fails only its batch (503, Retry-After) and is restarted. 0 = compute on the main thread (blocks HTTP while a batch runs; for tools and tests).',
  QUEUE_MAX_TOTAL: 'Classify requests queued in all (beyond → 429 queue_full).',
  QUEUE_MAX_PER_TENANT: 'Classify requests queued per tenant (fairness cap).',
  REQUEST_DEADLINE_MS: 'A queued classify request older than this fails with deadline_exceeded.',
  PREFIX_CACHE_BYTES: 'Byte budget of the serving prefix-activation cache (0 = off).',
  TRAIN_CACHE_BYTES: 'Byte budget of the training prefix cache (outside the wasm heap).',
  UPLOAD_MAX_BYTES: 'Largest accepted upload body.',
  CLASSIFY_MAX_BYTES: 'Largest classify request body (all its images together; base64 JSON counts as sent).',
  IMAGE_MAX_PIXELS: 'Largest decoded image (width × height).',
  INGEST_MAX_INFLATED_BYTES: 'Most uncompressed bytes one zip upload may declare in all; above 256 MiB also at most 20× the zip\'s own size (zip bombs). Checked from the central directory before anything is inflated → 400 invalid_archive.',
  INGEST_TENANT_BYTES: 'Uncompressed bytes one tenant may have in uploads being read at once, in this process; beyond → 413 payload_too_large (retry when they finish).',
  INGEST_TENANT_ENTRIES: 'Zip entries (or JSONL lines) one tenant may have in uploads being read at once, in this process; beyond → 413 payload_too_large.',
  DATASET_LEASE_MS: 'A data set being uploaded holds a lease renewed every quarter of this; once it lapses (the process died) the data set reads as failed ("processing was interrupted; upload again").',
  RATE_LIMIT_RPS: 'Per-tenant token-bucket refill rate (requests/s).',
  RATE_LIMIT_BURST: 'Per-tenant token-bucket size.',
  AUTH_CACHE_TTL_MS: 'How long a verified API key is trusted without a database lookup (0: look up every request). Revocations made in this process apply at once; made through another replica, within this time.',
  QUOTA_ADAPTERS: 'Adapters per tenant.',
  QUOTA_DATASETS: 'Data sets per tenant.',
  QUOTA_BYTES: 'Stored bytes per tenant (uploads + adapters).',
  SHUTDOWN_TIMEOUT_MS: 'On SIGTERM, longest wait for in-flight requests and queued batches before connections are closed.',
  HTTP_HEADERS_TIMEOUT_MS: 'Longest wait for a request\'s headers (at most `HTTP_REQUEST_TIMEOUT_MS`); then 408 and the connection closes.',
  HTTP_REQUEST_TIMEOUT_MS: 'Longest wait for a whole request, headers and body (0 = none); then 408 and the connection closes. Bounds the slowest upload.',
  HTTP_BODY_IDLE_TIMEOUT_MS: 'Longest pause in the arrival of a request body (0 = none); a stalled upload is then answered 408 and its connection closed.',
  HTTP_KEEP_ALIVE_TIMEOUT_MS: 'How long an idle kept-alive connection stays open for its next request. Longer than the idle timeouts of clients and proxies in front (load balancers: often 60 s; many client pools ignore the `Keep-Alive` hint), so the server is not the side that closes a connection a client is just reusing (ECONNRESET).',
  HTTP_DISCARD_MAX_BYTES: 'When a request is refused before its body was read to the end, up to this many more bytes are read and discarded so the answer reaches the client; past it (or `HTTP_DISCARD_MAX_MS`) the answer carries `Connection: close` and the connection closes.',
  HTTP_DISCARD_MAX_MS: 'Longest time spent discarding the rest of a refused request\'s body before answering (see `HTTP_DISCARD_MAX_BYTES`).',
  UPLOADS_PER_TENANT: 'Data set uploads one tenant may have in progress at once in this process; beyond → 429 rate_limited with Retry-After.',
  SWEEP_INTERVAL_MS: 'How often a process that runs jobs cleans up after interrupted work (unfinished deletes, data sets stuck processing, blobs no row names); 0: never.',
  SWEEP_GRACE_MS: 'The sweep leaves anything younger than this alone (an upload or publish in progress); at start, upload work folders under DATA_DIR/tmp older than this are removed.',
  PUBLIC_URL: 'The URL clients reach this service at (e.g. behind a proxy): the OpenAPI document\'s `servers` and the `Link` headers of list pages. Unset → the origin of each request.',
  IDEMPOTENCY_TTL_MS: 'How long the first answer to a creating POST sent with an `Idempotency-Key` is kept (per tenant) and returned to a retry with the same key and body.',
  METRICS_TOKEN: 'Bearer token `/metrics` requires (API and `dtl-host worker`); without it → 401. Unset → `/metrics` is open and holds no per-tenant series.',
  METRICS_TENANT_LABELS: 'Per-tenant metric series (images classified, queue depth, refusals by tenant id). Needs `METRICS_TOKEN`: tenant ids are never published on an open endpoint.',
};

/** The backbone engine's options (model/native/engine.ts EngineOptions) from the configuration. */
export function engineOptions(c: Pick<Config, 'ENGINE_THREADS' | 'ENGINE_PROVIDER' | 'ENGINE_SPIN_WAIT' | 'paths'>): {
  threads?: number;
  provider: Config['ENGINE_PROVIDER'];
  spinWait: boolean;
  weightsDir?: string;
} {
  return { threads: c.ENGINE_THREADS, provider: c.ENGINE_PROVIDER, spinWait: c.ENGINE_SPIN_WAIT, weightsDir: c.paths.engineWeightsDir };
}

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const raw: Record<string, string> = {};
  for (const key of Object.keys(configSchema.shape)) {
    const value = env[key];
    if (value !== undefined && value !== '') raw[key] = value;
  }
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    throw new AppError('config_invalid', `invalid configuration — ${problems.join('; ')}`, {
      details: { problems },
    });
  }
  const c = parsed.data;
  if (c.METRICS_TENANT_LABELS && c.METRICS_TOKEN === undefined) {
    const problems = ['METRICS_TENANT_LABELS: per-tenant metrics need METRICS_TOKEN (tenant ids would be public on /metrics)'];
    throw new AppError('config_invalid', `invalid configuration — ${problems[0]}`, { details: { problems } });
  }
  const dataDir = path.resolve(c.DATA_DIR);
  return {
    ...c,
    paths: {
      dataDir,
      blobDir: path.resolve(c.BLOB_DIR ?? path.join(dataDir, 'blobs')),
      pgliteDir: path.join(dataDir, 'pglite'),
      engineWeightsDir: c.ENGINE_WEIGHTS_DIR === 'off' ? undefined : path.resolve(c.ENGINE_WEIGHTS_DIR ?? path.join(dataDir, 'engine-weights')),
    },
  };
}
