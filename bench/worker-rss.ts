/**
 * A training worker's memory, measured the way the Kubernetes manifests run it (issue 17): an API
 * process (`src/server.ts`, WORKER_ENABLED=false) and a separate `dtl-host worker` process on one
 * PostgreSQL database and one blob folder, a synthetic backbone (default ViT-B/16: width 768,
 * 12 blocks, 224 px — the weights of a real one, random values), one training job. The worker's
 * RSS is read from /proc/<pid>/status every SAMPLE_MS while the job runs (each job trains in a
 * thread of its own, so that is where the memory goes). Prints JSON, MiB:
 *
 *   idle        worker RSS once started, before the job (its main thread keeps no weights)
 *   peak        largest sampled RSS while the job ran
 *   hwm         the kernel's high-water mark (VmHWM) at the end: the true peak, start included
 *   steady      median RSS over the job's second half
 *   after       RSS 5 s after the job ended (the thread and its backbone gone)
 *
 * usage: DATABASE_URL=postgres://…/<an empty database> node --import tsx bench/worker-rss.ts \
 *          [--width 768 --depth 12 --heads 12 --image 224 --patch 16] [--per-class 8 --classes 3]
 *          [--epochs 1 --batch 8] [--engine auto|tfjs]
 * The database's tables are created by the processes' migrations; use a database of its own.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { makeShapesDataset, zipClassFolders } from '../test/helpers/datasets.js';
import { writeTinyBackboneDir } from '../test/helpers/tiny-backbone.js';

const { values: a } = parseArgs({
  options: {
    width: { type: 'string', default: '768' },
    depth: { type: 'string', default: '12' },
    heads: { type: 'string', default: '12' },
    image: { type: 'string', default: '224' },
    patch: { type: 'string', default: '16' },
    classes: { type: 'string', default: '3' },
    'per-class': { type: 'string', default: '8' },
    epochs: { type: 'string', default: '1' },
    batch: { type: 'string', default: '8' },
    engine: { type: 'string', default: 'auto' },
  },
});
const n = (k: keyof typeof a) => Number(a[k]);
const DATABASE_URL = process.env.DATABASE_URL;
if (!DATABASE_URL) throw new Error('DATABASE_URL (an empty PostgreSQL database) is required: API and worker are separate processes');
const ADMIN_TOKEN = 'worker-rss-admin-token-0123456789';
const SAMPLE_MS = 100;
const MiB = 2 ** 20;
const ROOT = path.resolve(import.meta.dirname, '..');
const TSX = import.meta.resolve('tsx');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function status(pid: number): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

function start(args: string[], env: Record<string, string>, readyMsg: RegExp): { proc: ChildProcess; url: Promise<string>; log: () => string } {
  const proc = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: os.homedir(), MALLOC_MMAP_THRESHOLD_: '131072', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (out += d));
  const url = new Promise<string>((resolve, reject) => {
    const t = setInterval(() => {
      for (const line of out.split('\n')) {
        if (!line.startsWith('{')) continue;
        const j = JSON.parse(line) as { msg?: string; url?: string };
        if (j.msg !== undefined && readyMsg.test(j.msg)) {
          clearInterval(t);
          resolve(String(j.url));
        }
      }
    }, 100);
    proc.once('exit', (code) => {
      clearInterval(t);
      reject(new Error(`${args.join(' ')} exited ${code}:\n${out.slice(-3000)}`));
    });
  });
  return { proc, url, log: () => out };
}

async function call(url: string, init: { method?: string; token?: string; json?: unknown; body?: Uint8Array; type?: string } = {}) {
  const headers: Record<string, string> = {};
  if (init.token) headers.authorization = `Bearer ${init.token}`;
  if (init.json !== undefined) headers['content-type'] = 'application/json';
  if (init.type) headers['content-type'] = init.type;
  const res = await fetch(url, { method: init.method, headers, body: init.json === undefined ? init.body : JSON.stringify(init.json) });
  const text = await res.text();
  if (res.status >= 300) throw new Error(`${init.method ?? 'GET'} ${url}: ${res.status} ${text}`);
  return JSON.parse(text) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
}

const dir = await mkdtemp(path.join(os.tmpdir(), 'dtl-worker-rss-'));
const procs: ChildProcess[] = [];
try {
  const cfg = { width: n('width'), depth: n('depth'), heads: n('heads'), mlpDim: 4 * n('width'), imageSize: n('image'), patchSize: n('patch') };
  await writeTinyBackboneDir(path.join(dir, 'backbone'), { ...cfg, seed: 1 });
  const common = {
    DATABASE_URL,
    BLOB_DIR: path.join(dir, 'blobs'),
    BACKBONE: path.join(dir, 'backbone'),
    TFJS_BACKEND: 'wasm',
    BACKBONE_ENGINE: a.engine!,
    HOST: '127.0.0.1',
    PORT: '0',
    LOG_LEVEL: 'info',
    ADMIN_TOKEN,
  };
  const api = start(['--import', TSX, 'src/server.ts'], { ...common, DATA_DIR: path.join(dir, 'api'), WORKER_ENABLED: 'false', SERVE_WORKERS: '0' }, /^listening$/);
  procs.push(api.proc);
  const apiUrl = await api.url;
  const worker = start(['bin/dtl-host.js', 'worker'], { ...common, DATA_DIR: path.join(dir, 'worker') }, /^worker http listening/);
  procs.push(worker.proc);
  await worker.url;
  const pid = worker.proc.pid!;
  await sleep(2000);
  const idle = status(pid).rss;

  const tenant = await call(`${apiUrl}/v1/tenants`, { method: 'POST', token: ADMIN_TOKEN, json: { name: 'rss' } });
  const key = await call(`${apiUrl}/v1/tenants/${tenant.id}/keys`, { method: 'POST', token: ADMIN_TOKEN, json: { scopes: ['train'] } });
  const token = String(key.token);
  const images = await makeShapesDataset({ classes: n('classes'), perClass: n('per-class'), size: n('image'), seed: 6 });
  const ds = await call(`${apiUrl}/v1/datasets?name=shapes`, { method: 'POST', token, type: 'application/zip', body: await zipClassFolders(images) });
  const hp = { lr: 0.01, variant: 'dtl', epochs: n('epochs'), warmupEpochs: 0, batchSize: n('batch'), patience: 0 };
  const train = await call(`${apiUrl}/v1/adapters`, { method: 'POST', token, json: { datasetId: ds.id, name: 'rss', hyperparameters: hp } });
  const jobId = String(train.job.id);

  const samples: Array<{ t: number; rss: number }> = [];
  const t0 = Date.now();
  let job: Record<string, unknown> = {};
  let lastPoll = 0;
  for (;;) {
    samples.push({ t: Date.now() - t0, rss: status(pid).rss });
    if (Date.now() - lastPoll > 1000) {
      lastPoll = Date.now();
      job = await call(`${apiUrl}/v1/jobs/${jobId}`, { token });
      if (['succeeded', 'failed', 'cancelled'].includes(String(job.status))) break;
    }
    await sleep(SAMPLE_MS);
  }
  const jobMs = Date.now() - t0;
  await sleep(5000);
  const end = status(pid);
  const half = samples.filter((s) => s.t >= jobMs / 2).map((s) => s.rss).sort((x, y) => x - y);
  const mib = (b: number) => Math.round(b / MiB);
  process.stdout.write(
    `${JSON.stringify({
      backbone: { ...cfg, weightsMiB: mib(Number(readFileSync(path.join(dir, 'backbone', 'model.safetensors')).byteLength)) },
      images: images.length,
      hyperparameters: hp,
      engine: a.engine,
      node: process.version,
      job: { status: job.status, attempts: job.attempts, seconds: Math.round(jobMs / 1000) },
      rssMiB: { idle: mib(idle), peak: mib(Math.max(...samples.map((s) => s.rss))), hwm: mib(end.hwm), steady: mib(half[Math.floor(half.length / 2)] ?? NaN), after: mib(end.rss) },
      load: os.loadavg()[0].toFixed(2),
      cores: os.availableParallelism(),
    })}\n`,
  );
  if (job.status !== 'succeeded') process.stderr.write(`${worker.log().slice(-4000)}\n`);
} finally {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGTERM');
  await sleep(1000);
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  await rm(dir, { recursive: true, force: true });
}
