/**
 * Training end to end on real parts: upload through the datasets service, train through the
 * durable queue and the worker runtime, publish to the blob store, and score the published
 * adapter on held-out images through `dtl-host predict` in a child process. Also: the event
 * stream, tenant isolation, request validation, and no tensor growth across jobs.
 */
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as adaptersRepo from '../../src/db/repos/adapters.js';
import * as datasetsRepo from '../../src/db/repos/datasets.js';
import { AppError } from '../../src/errors.js';
import { JobQueue } from '../../src/jobs/queue.js';
import { loadAdapter } from '../../src/model/index.js';
import { createDataset } from '../../src/services/datasets.js';
import { cancelJob, getJob, listJobEvents, listJobs, startTraining, type JobView } from '../../src/services/training.js';
import { createWorkerRuntime, type WorkerRuntime } from '../../src/train/runtime.js';
import { bufferStream, makeShapesDataset, zipClassFolders } from '../helpers/datasets.js';
import { dbTargets } from '../helpers/db.js';
import { openServiceFixture, type ServiceFixture } from '../train/service-fixture.js';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function failure(p: Promise<unknown>): Promise<AppError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    return err as AppError;
  }
  throw new Error('expected the call to fail');
}

/** Polls until `check` returns a value, or fails after `ms`. */
async function waitFor<T>(check: () => Promise<T | undefined>, ms = 90_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error('timed out waiting');
    await sleep(50);
  }
}

const TERMINAL = ['succeeded', 'failed', 'cancelled'];

describe.each(dbTargets())('training service on %s', (kind) => {
  let f: ServiceFixture;
  let runtime: WorkerRuntime;
  let datasetId: string;

  const waitDone = (id: string) =>
    waitFor(async () => {
      const j = await getJob({ deps: f.deps, ctx: f.ctx, id });
      return TERMINAL.includes(j.status) ? j : undefined;
    });

  beforeAll(async () => {
    f = await openServiceFixture(kind);
    const images = await makeShapesDataset({ classes: 4, perClass: 30, size: 40, seed: 3 });
    const up = await createDataset({ deps: f.deps, ctx: f.ctx, input: { name: 'shapes', source: bufferStream(await zipClassFolders(images)), contentType: 'application/zip' } });
    datasetId = up.dataset.id;
    // Heartbeats every 2 s: cancels are seen quickly, and a loaded machine does not lose the lease.
    const queue = new JobQueue(f.db.db, { leaseMs: 6000, maxAttempts: 3, backoff: { baseMs: 50, maxMs: 200 } });
    runtime = createWorkerRuntime(f.deps, { queue, pollMs: 50, cachePrecision: 'float16' });
  });
  afterAll(async () => {
    await runtime?.stop({ graceMs: 5000 });
    await f?.close();
  });

  it('validates the request before queueing anything', async () => {
    const base = { datasetId, adapterName: 'x' };
    expect(await failure(startTraining({ deps: f.deps, ctx: f.ctx, input: { ...base, hyperparameters: { lr: -1 } } }))).toMatchObject({ code: 'validation_failed' });
    expect((await failure(startTraining({ deps: f.deps, ctx: f.ctx, input: { ...base, hyperparameters: { addBlocks: [9] } } }))).message).toContain('the backbone has 4 blocks');
    expect((await failure(startTraining({ deps: f.deps, ctx: f.ctx, input: { ...base, adapterName: '../etc' } }))).code).toBe('validation_failed');
    expect((await failure(startTraining({ deps: f.deps, ctx: f.other, input: base }))).code).toBe('not_found');
    const pending = await datasetsRepo.create(f.db.db, f.ctx.tenantId, { name: 'half-made', status: 'processing' });
    expect((await failure(startTraining({ deps: f.deps, ctx: f.ctx, input: { ...base, datasetId: pending.id } }))).code).toBe('invalid_state');
    await datasetsRepo.remove(f.db.db, f.ctx.tenantId, pending.id);
    expect(await listJobs({ deps: f.deps, ctx: f.ctx })).toEqual([]);
    expect(await adaptersRepo.list(f.db.db, f.ctx.tenantId)).toEqual([]);
  });

  it('trains through the job queue, publishes, and the adapter scores ≥ 90 % on held-out images via dtl-host predict', async () => {
    const tensorsBefore = tf.memory().numTensors;
    const { adapter, job } = await startTraining({
      deps: f.deps,
      ctx: f.ctx,
      input: { datasetId, adapterName: 'shapes', hyperparameters: { epochs: 20, warmupEpochs: 1, batchSize: 16, lr: 1e-2, seed: 1, patience: 6 } },
    });
    expect(job.status).toBe('queued');
    runtime.start();
    const done: JobView = await waitDone(job.id);
    expect(done.status, String(done.error)).toBe('succeeded');
    expect(tf.memory().numTensors).toBe(tensorsBefore);

    // The event stream: status changes, one progress event per epoch, then the published version.
    const events = await listJobEvents({ deps: f.deps, ctx: f.ctx, id: job.id });
    const types = events.map((e) => (e.type === 'status' ? `status:${(e.data as { status: string }).status}` : e.type));
    const progress = events.filter((e) => e.type === 'progress').map((e) => e.data as Record<string, number>);
    expect(types[0]).toBe('status:queued');
    expect(types[1]).toBe('status:running');
    expect(types[2]).toBe('started');
    expect(types.slice(-2)).toEqual(['published', 'status:succeeded']);
    expect(progress.map((p) => p.epoch)).toEqual(progress.map((_, i) => i + 1));
    for (const p of progress) {
      for (const k of ['trainLoss', 'trainAccuracy', 'valAccuracy', 'lr', 'imagesPerSecond', 'etaSeconds']) expect(typeof p[k], k).toBe('number');
    }
    // Reading it as a stream: page after page by the last id seen gives the same events.
    const streamed = [];
    let after = 0;
    for (;;) {
      const page = await listJobEvents({ deps: f.deps, ctx: f.ctx, id: job.id, afterId: after, limit: 3 });
      if (page.length === 0) break;
      streamed.push(...page);
      after = page[page.length - 1].id;
    }
    expect(streamed).toEqual(events);

    // The version row, its alias and metrics.
    const versions = await adaptersRepo.listVersions(f.db.db, f.ctx.tenantId, adapter.id);
    expect(versions.length).toBe(1);
    const v = versions[0];
    expect(done.result).toMatchObject({ adapterId: adapter.id, versionId: v.id, version: 1, trainedThisAttempt: true });
    expect((await adaptersRepo.resolve(f.db.db, f.ctx.tenantId, 'shapes')).version.id).toBe(v.id);
    expect(v).toMatchObject({ source: 'trained', jobId: job.id, datasetId, backboneId: f.deps.backbone.identity });
    expect(v.objectKey).toMatch(new RegExp(`^tenants/${f.ctx.tenantId}/adapters/${adapter.id}/v1-[0-9a-f-]{36}\\.safetensors$`));
    const m = v.metrics as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
    expect(m.evaluation.split).toBe('val');
    expect(m.evaluation.confusionMatrix.length).toBe(4);
    expect(m.evaluation.perClass.map((c: { label: string }) => c.label)).toEqual(['circle', 'cross', 'square', 'triangle']);
    expect(m.lossCurve.length).toBe(m.epochsRun);
    expect(m.cache.computed).toBe(m.split.train + m.split.val);
    expect(m.cache.hits).toBe((m.epochsRun - 1) * (m.split.train + m.split.val) + m.split.val);
    for (const k of ['bestEpoch', 'trainableParams', 'trainSeconds', 'peakTensorBytes']) expect(m[k], k).toBeGreaterThan(0);
    expect(m.hyperparameters).toMatchObject({ lr: 1e-2, epochs: 20, rank: 8 }); // rank 'auto' on a width-32 backbone (autoRank)

    // Download the file; its metadata carries labels, backbone identity, hyperparameters, metrics.
    const bytes = await f.blobs.getBuffer(v.objectKey);
    expect(bytes.length).toBe(v.byteSize);
    const loaded = loadAdapter(bytes, f.deps.backbone.config);
    // The version's metrics record the class weights and the temperature fitted on val, which the file carries.
    expect(m.classWeighting).toMatchObject({ mode: 'balanced' });
    expect(m.calibration).toMatchObject({ fittedOn: 'val', count: m.split.val });
    for (const k of ['before', 'after']) expect(Object.keys(m.calibration[k]).sort(), k).toEqual(['ece', 'nll']);
    expect(loaded.adapter.temperature).toBe(m.calibration.temperature);
    loaded.adapter.dispose();
    expect(loaded.meta).toMatchObject({
      labels: ['circle', 'cross', 'square', 'triangle'],
      backbone: { identity: f.deps.backbone.identity, width: 32, depth: 4 },
      hyperparameters: { seed: 1 },
      metrics: { bestEpoch: m.bestEpoch, accuracy: m.evaluation.accuracy },
    });
    const adapterFile = path.join(f.dir, 'downloaded.safetensors');
    await writeFile(adapterFile, bytes);

    const heldOut = await makeShapesDataset({ classes: 4, perClass: 10, size: 40, seed: 901 });
    const imgDir = path.join(f.dir, 'held-out');
    await mkdir(imgDir);
    const files = await Promise.all(
      heldOut.map(async (img, i) => {
        const file = path.join(imgDir, `${i}-${img.label}.png`);
        await writeFile(file, img.data);
        return file;
      }),
    );
    const { stdout } = await run(process.execPath, ['bin/dtl-host.js', 'predict', '--backbone', f.backboneDir, '--adapter', adapterFile, '--top', '1', ...files], {
      env: { ...process.env, TFJS_BACKEND: 'wasm' },
      maxBuffer: 16 << 20,
    });
    const predictions = JSON.parse(stdout) as Array<{ image: string; top: Array<{ label: string }> }>;
    expect(predictions.length).toBe(heldOut.length);
    const correct = predictions.filter((p, i) => p.top[0].label === heldOut[i].label).length;
    const accuracy = correct / heldOut.length;
    expect(accuracy).toBeGreaterThanOrEqual(0.9);

    // A second job trains version 2 of the same adapter; 'latest' moves; tensors still do not grow.
    const second = await startTraining({ deps: f.deps, ctx: f.ctx, input: { datasetId, adapterName: 'shapes', hyperparameters: { epochs: 2, warmupEpochs: 0, batchSize: 32, seed: 2 } } });
    expect(second.adapter.id).toBe(adapter.id);
    expect((await waitDone(second.job.id)).status).toBe('succeeded');
    expect((await adaptersRepo.resolve(f.db.db, f.ctx.tenantId, 'shapes')).version.version).toBe(2);
    expect(tf.memory().numTensors).toBe(tensorsBefore);
  });

  it("jobs are invisible to other tenants", async () => {
    const [job] = await listJobs({ deps: f.deps, ctx: f.ctx });
    const foreign = { deps: f.deps, ctx: f.other, id: job.id };
    expect((await failure(getJob(foreign))).code).toBe('not_found');
    expect((await failure(cancelJob(foreign))).code).toBe('not_found');
    expect((await failure(listJobEvents(foreign))).code).toBe('not_found');
    expect(await listJobs({ deps: f.deps, ctx: f.other })).toEqual([]);
  });

  it('a default job searches (search events per candidate and rung); cancelled mid-search it publishes nothing', async () => {
    // 'best': 26 candidates, rungs after epochs 3, 6, 12, 24 — the search outlasts a heartbeat.
    const { adapter, job } = await startTraining({
      deps: f.deps,
      ctx: f.ctx,
      input: { datasetId, adapterName: 'search-cancelled', hyperparameters: { epochs: 200, warmupEpochs: 0, batchSize: 8, patience: 0, budget: 'best' } },
    });
    const events = () => listJobEvents({ deps: f.deps, ctx: f.ctx, id: job.id });
    const progress = await waitFor(async () => (await events()).find((e) => e.type === 'progress'));
    expect(progress.data).toMatchObject({ candidates: 26 });
    expect((await events()).find((e) => e.type === 'search')?.data).toMatchObject({ stage: 'start', candidates: 26, budget: 'best' });
    await cancelJob({ deps: f.deps, ctx: f.ctx, id: job.id });
    expect((await waitDone(job.id)).status).toBe('cancelled');
    const all = await events();
    expect(all.some((e) => e.type === 'search' && (e.data as { stage: string }).stage === 'chosen')).toBe(false);
    expect(all.map((e) => e.type)).not.toContain('published');
    expect(await adaptersRepo.listVersions(f.db.db, f.ctx.tenantId, adapter.id)).toEqual([]);
    expect(await f.keys(`tenants/${f.ctx.tenantId}/adapters/${adapter.id}/`)).toEqual([]);
  });

  it('cancel: a running job ends cancelled between batches and publishes nothing; a queued one at once', async () => {
    const { adapter, job } = await startTraining({
      deps: f.deps,
      ctx: f.ctx,
      input: { datasetId, adapterName: 'cancelled', hyperparameters: { epochs: 500, warmupEpochs: 0, batchSize: 8, patience: 0 } },
    });
    await waitFor(async () => ((await listJobEvents({ deps: f.deps, ctx: f.ctx, id: job.id })).some((e) => e.type === 'progress') ? true : undefined));
    const requested = await cancelJob({ deps: f.deps, ctx: f.ctx, id: job.id });
    expect(requested).toMatchObject({ status: 'running', cancelRequested: true });
    const done = await waitDone(job.id);
    expect(done.status).toBe('cancelled');
    expect(await adaptersRepo.listVersions(f.db.db, f.ctx.tenantId, adapter.id)).toEqual([]);
    expect(await f.keys(`tenants/${f.ctx.tenantId}/adapters/${adapter.id}/`)).toEqual([]);
    const types = (await listJobEvents({ deps: f.deps, ctx: f.ctx, id: job.id })).map((e) => e.type);
    expect(types).toContain('cancel_requested');
    expect(types).not.toContain('published');

    await runtime.stop({ graceMs: 5000 });
    const queued = await startTraining({ deps: f.deps, ctx: f.ctx, input: { datasetId, adapterName: 'cancelled' } });
    expect((await cancelJob({ deps: f.deps, ctx: f.ctx, id: queued.job.id })).status).toBe('cancelled');
    expect(await adaptersRepo.listVersions(f.db.db, f.ctx.tenantId, adapter.id)).toEqual([]);
  });
});
