/**
 * Training threads (src/threads/train-runner.ts, train-job.ts) on real parts: the harness's
 * in-process worker with a PGlite database and a disk blob store, each job's compute in a thread
 * of its own. A threaded job writes the events and numbers the in-process compute does; a thread
 * that dies (an uncaught error, an exit, out of memory) fails only its attempt, is counted in
 * /metrics and leaves the process training; a cancel stops the thread mid-run.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as adaptersRepo from '../../src/db/repos/adapters.js';
import * as datasetsRepo from '../../src/db/repos/datasets.js';
import * as jobsRepo from '../../src/db/repos/jobs.js';
import { threadTrainCompute, type TrainThreadOptions } from '../../src/threads/train-runner.js';
import { computeTrainedFile } from '../../src/train/compute.js';
import { parseHyperparameters } from '../../src/train/hyperparameters.js';
import type { TrainingMetrics } from '../../src/train/trainer.js';
import { makeShapesDataset, zipClassFolders } from '../helpers/datasets.js';
import { startHarness, type Harness } from '../routes/harness.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const CRASH = new URL('./crash-thread.ts', import.meta.url);
const HP = { lr: 0.01, variant: 'dtl', epochs: 2, warmupEpochs: 0, batchSize: 8, patience: 0, seed: 3 };

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 90_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('training threads', () => {
  let h: Harness;
  let t: { id: string; token: string };
  let datasetId: string;
  let adapterId: string;
  /** Set by a test to start the next jobs' threads at the crashing entry. */
  let crash: { mode: string; options: Partial<TrainThreadOptions> } | undefined;

  beforeAll(async () => {
    h = await startHarness({
      worker: true,
      // tfjs in the thread too (the harness's backbone has no onnxruntime sessions): same bits.
      env: { BACKBONE_ENGINE: 'tfjs', JOB_MAX_ATTEMPTS: '2' },
      queue: { maxAttempts: 2 },
      compute: ({ env, deps }) => (input, hooks, signal) =>
        threadTrainCompute({
          env: crash === undefined ? env : { ...env, TEST_CRASH: crash.mode },
          onThreadFailure: (reason) => deps.metrics.countTrainThreadFailure(reason),
          ...(crash === undefined ? {} : { entry: CRASH, ...crash.options }),
        })(input, hooks, signal),
    });
    t = await h.tenant('threads');
    const zip = await zipClassFolders(await makeShapesDataset({ classes: 3, perClass: 8, size: 16, seed: 4 }));
    const up = await h.call('POST', '/v1/datasets?name=shapes', { token: t.token, body: zip, headers: { 'content-type': 'application/zip' } });
    expect(up.status, up.text).toBe(201);
    datasetId = up.body.id;
  }, 120_000);
  afterAll(async () => {
    await h?.close();
  });

  const train = async (hyperparameters: Record<string, unknown>) => {
    const r = adapterId === undefined
      ? await h.call('POST', '/v1/adapters', { token: t.token, body: { datasetId, name: 'threaded', hyperparameters } })
      : await h.call('POST', `/v1/adapters/${adapterId}/train`, { token: t.token, body: { datasetId, hyperparameters } });
    expect(r.status, r.text).toBe(202);
    adapterId = r.body.adapter?.id ?? adapterId;
    return r.body.job.id as string;
  };
  const ended = (jobId: string) =>
    until('the job to end', async () => {
      const j = await h.call('GET', `/v1/jobs/${jobId}`, { token: t.token });
      return ['succeeded', 'failed', 'cancelled'].includes(j.body.status) ? j.body : undefined;
    });
  const events = (jobId: string) => jobsRepo.listEvents(h.db.db, jobId, t.id);

  it('a job trained in its thread writes the events, progress and numbers of the in-process compute, and no tensor on the main thread', async () => {
    const tensors = tf.memory().numTensors;
    const jobId = await train(HP);
    const job = await ended(jobId);
    expect(job.status, JSON.stringify(job.error)).toBe('succeeded');
    expect(job.attempts).toBe(1);
    expect(tf.memory().numTensors).toBe(tensors);

    const all = await events(jobId);
    const types = all.map((e) => e.type).filter((x) => x !== 'status');
    expect(types).toEqual(['started', 'progress', 'progress', 'published']);
    const started = all.find((e) => e.type === 'started')!.data as Record<string, unknown>;
    expect(started).toMatchObject({ attempt: 1, images: 24, classes: 3, backbone: { identity: h.deps.backbone.identity } });
    const progress = all.filter((e) => e.type === 'progress').map((e) => e.data as Record<string, unknown>);
    expect(progress.map((p) => [p.phase, p.epoch, p.epochs])).toEqual([['training', 1, 2], ['training', 2, 2]]);

    // The same compute on this thread, on the same prepared data set: the same numbers, bit for bit.
    const version = (await adaptersRepo.findVersionByJob(h.db.db, t.id, jobId))!;
    const dataset = await datasetsRepo.get(h.db.db, t.id, datasetId);
    const direct = await computeTrainedFile(
      h.deps,
      { jobId: 'direct', preparedKey: dataset.preparedKey!, hyperparameters: parseHyperparameters(HP), cacheBytes: h.config.TRAIN_CACHE_BYTES, cachePrecision: 'float16' },
      { started() {}, epoch() {}, search() {} },
      new AbortController().signal,
    );
    const threaded = version.metrics as unknown as TrainingMetrics;
    const curve = (m: TrainingMetrics) => m.lossCurve.map((p) => [p.trainLoss, p.trainAccuracy, p.valLoss, p.valAccuracy]);
    expect(curve(threaded)).toEqual(curve(direct.metrics));
    expect(threaded.evaluation).toEqual(direct.metrics.evaluation);
    expect(threaded.calibration.temperature).toBe(direct.metrics.calibration.temperature);
    expect(version.byteSize).toBe(direct.bytes.length);
    expect(version.backboneId).toBe(h.deps.backbone.identity);
  }, 120_000);

  it.each([
    ['error', 'error', {}],
    ['exit', 'exit', {}],
    ['oom', 'out_of_memory', { resourceLimits: { maxOldGenerationSizeMb: 48, maxYoungGenerationSizeMb: 8 } }],
  ] as const)('a thread that dies (%s) fails only that attempt, is retried, counted in /metrics, and the process trains on', async (mode, reason, options) => {
    crash = { mode, options };
    let job: Record<string, unknown>;
    try {
      job = await ended(await train(HP));
    } finally {
      crash = undefined;
    }
    // Each attempt's thread died: retried once (maxAttempts 2), then failed, with a tenant-safe error.
    expect([job.status, job.attempts]).toEqual(['failed', 2]);
    expect((job.error as { code: string }).code).toBe('internal');
    const metrics = await h.call('GET', '/metrics');
    expect(metrics.text).toContain(`dtl_train_thread_failures_total{reason="${reason}"} 2`);

    expect((await h.call('GET', '/healthz')).status).toBe(200);
    const next = await ended(await train({ ...HP, epochs: 1 }));
    expect(next.status, JSON.stringify(next.error)).toBe('succeeded');
  }, 120_000);

  it('a cancel stops the thread between batches: cancelled, nothing published', async () => {
    const jobId = await train({ ...HP, epochs: 500 });
    await until('the first epoch', async () => ((await events(jobId)).some((e) => e.type === 'progress') ? true : undefined));
    const asked = Date.now();
    const c = await h.call('POST', `/v1/jobs/${jobId}/cancel`, { token: t.token });
    expect(c.status).toBe(200);
    const job = await ended(jobId);
    expect(job.status).toBe('cancelled');
    // Seen at the next heartbeat (lease/3 = 2 s), then the thread's next batch.
    expect(Date.now() - asked).toBeLessThan(15_000);
    expect(await adaptersRepo.findVersionByJob(h.db.db, t.id, jobId)).toBeUndefined();
  }, 120_000);
});
