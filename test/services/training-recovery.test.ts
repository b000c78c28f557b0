/**
 * Crashes: a worker that dies mid-training (its lease left to expire) or right after publishing
 * (before recording success) → another worker picks the job up, it succeeds, and exactly one
 * version exists. The in-process "crash" is a queue whose every call fails from a given moment,
 * as when the process's database connection dies; on PostgreSQL a real `dtl-host worker` child
 * process is killed with SIGKILL. `dtl-host worker` also stops gracefully on SIGTERM.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cp, readdir, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as adaptersRepo from '../../src/db/repos/adapters.js';
import { JobQueue } from '../../src/jobs/queue.js';
import { createAdapter } from '../../src/model/index.js';
import { createDataset } from '../../src/services/datasets.js';
import { getJob, listJobEvents, startTraining } from '../../src/services/training.js';
import { publishTrainedAdapter } from '../../src/train/publish.js';
import { createWorkerRuntime } from '../../src/train/runtime.js';
import type { TrainingMetrics } from '../../src/train/trainer.js';
import { parseHyperparameters } from '../../src/train/hyperparameters.js';
import { bufferStream, makeShapesDataset, zipClassFolders } from '../helpers/datasets.js';
import { dbTargets, makeTempDir, openTestPglite } from '../helpers/db.js';
import { writeTinyBackboneDir } from '../helpers/tiny-backbone.js';
import { TINY } from '../train/helpers.js';
import { openServiceFixture, type ServiceFixture } from '../train/service-fixture.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor<T>(check: () => Promise<T | undefined>, ms = 120_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error('timed out waiting');
    await sleep(50);
  }
}

/** A queue that behaves like a process that died: from the trigger on, every call fails. */
class CrashingQueue extends JobQueue {
  dead = false;
  private progressCalls = 0;
  constructor(
    db: JobQueue['db'],
    private readonly crashAt: { progressCall?: number; complete?: boolean },
  ) {
    super(db, { leaseMs: 3000, maxAttempts: 3, backoff: { baseMs: 50, maxMs: 200 } });
  }
  private gone(): never {
    this.dead = true;
    throw new Error('simulated crash: this worker process is gone');
  }
  override async claim(...a: Parameters<JobQueue['claim']>) {
    if (this.dead) this.gone();
    return super.claim(...a);
  }
  override async heartbeat(...a: Parameters<JobQueue['heartbeat']>) {
    if (this.dead) this.gone();
    return super.heartbeat(...a);
  }
  override async progress(...a: Parameters<JobQueue['progress']>) {
    if (this.dead || ++this.progressCalls === this.crashAt.progressCall) this.gone();
    return super.progress(...a);
  }
  override async complete(...a: Parameters<JobQueue['complete']>) {
    if (this.dead || this.crashAt.complete) this.gone();
    return super.complete(...a);
  }
  override async fail(...a: Parameters<JobQueue['fail']>) {
    if (this.dead) this.gone();
    return super.fail(...a);
  }
  override async recoverExpired() {
    if (this.dead) this.gone();
    return super.recoverExpired();
  }
  override async appendEvent(...a: Parameters<JobQueue['appendEvent']>) {
    if (this.dead) this.gone();
    return super.appendEvent(...a);
  }
}

// One explicit recipe (lr and variant): these tests are about recovery, not the search.
const HP = { epochs: 6, warmupEpochs: 1, batchSize: 16, lr: 1e-2, variant: 'dtl', seed: 4, patience: 0 };

describe.each(dbTargets())('training recovery on %s', (kind) => {
  let f: ServiceFixture;
  let datasetId: string;
  beforeAll(async () => {
    f = await openServiceFixture(kind);
    const images = await makeShapesDataset({ classes: 3, perClass: 12, size: 32, seed: 8 });
    datasetId = (await createDataset({ deps: f.deps, ctx: f.ctx, input: { name: 'd', source: bufferStream(await zipClassFolders(images)) } })).dataset.id;
  });
  afterAll(() => f?.close());

  /**
   * The healthy worker: a long lease of its own (a loaded 2-core machine must not make it lose the
   * job), but it looks for expired leases (the crashed worker's 3 s one) every 200 ms.
   */
  const healthy = (owner: string) =>
    createWorkerRuntime(f.deps, {
      queue: new JobQueue(f.db.db, { leaseMs: 10_000, maxAttempts: 3, backoff: { baseMs: 50, maxMs: 200 } }),
      pollMs: 50,
      recoverEveryMs: 200,
      owner,
    });

  /** Runs the job on a worker that crashes at the trigger, then on a healthy one. */
  async function crashThenRecover(adapterName: string, crashAt: { progressCall?: number; complete?: boolean }) {
    const { adapter, job } = await startTraining({ deps: f.deps, ctx: f.ctx, input: { datasetId, adapterName, hyperparameters: HP } });
    const crashing = new CrashingQueue(f.db.db, crashAt);
    const a = createWorkerRuntime(f.deps, { queue: crashing, pollMs: 50, owner: 'worker-a' });
    a.start();
    await waitFor(async () => (crashing.dead ? true : undefined));
    const b = healthy('worker-b');
    b.start();
    const done = await waitFor(async () => {
      const j = await getJob({ deps: f.deps, ctx: f.ctx, id: job.id });
      return ['succeeded', 'failed', 'cancelled'].includes(j.status) ? j : undefined;
    });
    await b.stop({ graceMs: 5000 });
    await a.stop({ graceMs: 5000 });
    // Which worker ran each attempt is in the raw event log (the operator's view); the tenant's view leaves it out.
    const events = await JobQueue.of(f.deps).listEvents(job.id, f.ctx.tenantId);
    const tenantView = await listJobEvents({ deps: f.deps, ctx: f.ctx, id: job.id });
    expect(JSON.stringify(tenantView)).not.toMatch(/worker-[ab]/);
    return { adapter, job: done, events, versions: await adaptersRepo.listVersions(f.db.db, f.ctx.tenantId, adapter.id) };
  }

  it('a worker dying mid-training: the lease expires, another worker completes the job, one version', async () => {
    const r = await crashThenRecover('mid-training', { progressCall: 2 });
    expect(r.job.status, String(r.job.error)).toBe('succeeded');
    expect(r.job.attempts).toBe(2);
    expect(r.versions.length).toBe(1);
    expect(r.job.result).toMatchObject({ versionId: r.versions[0].id, trainedThisAttempt: true });
    const statuses = r.events.filter((e) => e.type === 'status').map((e) => e.data as { status: string; owner?: string; recovered?: boolean });
    expect(statuses.map((s) => s.status)).toEqual(['queued', 'running', 'queued', 'running', 'succeeded']);
    expect(statuses[1].owner).toBe('worker-a');
    expect(statuses[2].recovered).toBe(true);
    expect(statuses[3].owner).toBe('worker-b');
    expect(r.events.filter((e) => e.type === 'started').length).toBe(2);
    expect(r.events.filter((e) => e.type === 'published').length).toBe(1);
    expect(await f.keys(`tenants/${f.ctx.tenantId}/adapters/${r.adapter.id}/`)).toEqual([r.versions[0].objectKey]);

    // A zombie publishing for the same job later gets the existing version back; its file is dropped.
    const zombie = createAdapter(f.deps.backbone.config, r.versions[0].spec as never, { seed: 1 });
    try {
      const again = await publishTrainedAdapter({
        db: f.db.db,
        blobs: f.blobs,
        tenantId: f.ctx.tenantId,
        adapterId: r.adapter.id,
        jobId: r.job.id,
        datasetId,
        adapter: zombie,
        backbone: f.deps.backbone,
        hyperparameters: parseHyperparameters(HP),
        metrics: r.versions[0].metrics as unknown as TrainingMetrics,
      });
      expect(again).toMatchObject({ created: false, version: { id: r.versions[0].id } });
    } finally {
      zombie.dispose();
    }
    expect(await f.keys(`tenants/${f.ctx.tenantId}/adapters/${r.adapter.id}/`)).toEqual([r.versions[0].objectKey]);
  });

  it('a worker dying after publishing but before recording success: the retry trains nothing, one version', async () => {
    const r = await crashThenRecover('after-publish', { complete: true });
    expect(r.job.status, String(r.job.error)).toBe('succeeded');
    expect(r.job.attempts).toBe(2);
    expect(r.versions.length).toBe(1);
    expect(r.job.result).toMatchObject({ versionId: r.versions[0].id, trainedThisAttempt: false });
    expect(r.events.filter((e) => e.type === 'started').length).toBe(1);
    expect(r.events.filter((e) => e.type === 'progress').length).toBe(7);
    expect(r.events.filter((e) => e.type === 'published').length).toBe(2);
  });
});

function startCli(args: string[], env: Record<string, string>): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, ['bin/dtl-host.js', ...args], { env: { ...process.env, TFJS_BACKEND: 'wasm', PORT: '0', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, output: () => out, exited };
}

// Two processes cannot share one PGlite data folder, so the child-process crash needs PostgreSQL.
describe.each(dbTargets().filter((k) => k === 'postgres'))('dtl-host worker killed with SIGKILL (%s)', (kind) => {
  let f: ServiceFixture;
  beforeAll(async () => {
    f = await openServiceFixture(kind);
  });
  afterAll(() => f?.close());

  it('another worker completes the job after the lease expires; exactly one version', async () => {
    const images = await makeShapesDataset({ classes: 3, perClass: 12, size: 32, seed: 8 });
    const datasetId = (await createDataset({ deps: f.deps, ctx: f.ctx, input: { name: 'd', source: bufferStream(await zipClassFolders(images)) } })).dataset.id;
    const { adapter, job } = await startTraining({ deps: f.deps, ctx: f.ctx, input: { datasetId, adapterName: 'killed', hyperparameters: { ...HP, epochs: 40 } } });
    const cli = startCli(['worker'], {
      DATABASE_URL: f.db.url!,
      DATA_DIR: path.join(f.dir, 'child'),
      BLOB_DIR: f.deps.config.paths.blobDir,
      BACKBONE: f.backboneDir,
      JOB_LEASE_MS: '3000',
      LOG_LEVEL: 'info',
    });
    try {
      await waitFor(async () => ((await listJobEvents({ deps: f.deps, ctx: f.ctx, id: job.id })).filter((e) => e.type === 'progress').length >= 2 ? true : undefined), 60_000);
    } catch (err) {
      throw new Error(`child worker made no progress: ${cli.output().slice(-2000)}`, { cause: err });
    }
    cli.child.kill('SIGKILL');
    expect(await cli.exited).toBeNull();
    const b = createWorkerRuntime(f.deps, {
      queue: new JobQueue(f.db.db, { leaseMs: 10_000, maxAttempts: 3, backoff: { baseMs: 50, maxMs: 200 } }),
      pollMs: 50,
      recoverEveryMs: 200,
      owner: 'worker-b',
    });
    b.start();
    const done = await waitFor(async () => {
      const j = await getJob({ deps: f.deps, ctx: f.ctx, id: job.id });
      return ['succeeded', 'failed', 'cancelled'].includes(j.status) ? j : undefined;
    }, 180_000);
    await b.stop({ graceMs: 5000 });
    expect(done.status, String(done.error)).toBe('succeeded');
    expect(done.attempts).toBe(2);
    expect((await adaptersRepo.listVersions(f.db.db, f.ctx.tenantId, adapter.id)).length).toBe(1);
    const statuses = (await JobQueue.of(f.deps).listEvents(job.id, f.ctx.tenantId)).filter((e) => e.type === 'status').map((e) => e.data as { status: string; owner?: string });
    expect(statuses.map((s) => s.status)).toEqual(['queued', 'running', 'queued', 'running', 'succeeded']);
    expect(statuses[1].owner).toMatch(new RegExp(`/${cli.child.pid}/`));
    const tenantView = (await listJobEvents({ deps: f.deps, ctx: f.ctx, id: job.id })).filter((e) => e.type === 'status');
    expect(tenantView.every((e) => !('owner' in (e.data as object)))).toBe(true);
  });
});

describe('dtl-host worker', () => {
  it('starts on its own database and stops gracefully on SIGTERM', async () => {
    const dir = await makeTempDir('dtl-cli-worker');
    // A copy of the migrated PGlite template the db helper keeps (creating one takes many seconds).
    await (await openTestPglite()).close();
    const templates = (await readdir(os.tmpdir())).filter((n) => n.startsWith('dtl-pglite-template-'));
    const stamped = await Promise.all(templates.map(async (n) => ({ n, t: (await stat(path.join(os.tmpdir(), n))).mtimeMs })));
    const newest = stamped.sort((a, b) => b.t - a.t)[0].n;
    await cp(path.join(os.tmpdir(), newest), path.join(dir, 'pglite'), { recursive: true });
    await writeTinyBackboneDir(path.join(dir, 'backbone'), TINY);
    const cli = startCli(['worker', '--concurrency', '2'], { DATA_DIR: dir, BACKBONE: path.join(dir, 'backbone'), LOG_LEVEL: 'info', DATABASE_URL: '' });
    await waitFor(async () => (cli.output().includes('training worker started') ? true : undefined), 90_000).catch((err) => {
      throw new Error(`worker did not start: ${cli.output().slice(-2000)}`, { cause: err });
    });
    cli.child.kill('SIGTERM');
    expect(await cli.exited).toBe(0);
    expect(cli.output()).toContain('training worker stopped');
    const bad = startCli(['worker', '--concurrency', 'lots'], { DATA_DIR: dir });
    expect(await bad.exited).toBe(2);
    expect(bad.output()).toContain("--concurrency must be an integer in 1..64, got 'lots'");
    await rm(dir, { recursive: true, force: true });
  });
});
