/**
 * A training job on a Swin backbone, end to end on real parts: upload through the datasets
 * service, train through the durable queue and the worker runtime, publish; the published file
 * is a Swin adapter with the Swin defaults and classifies held-out shapes well above chance.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as adaptersRepo from '../../src/db/repos/adapters.js';
import { JobQueue } from '../../src/jobs/queue.js';
import { imagesToTensor, loadAdapter, predictLogits, preprocessImage } from '../../src/model/index.js';
import { createDataset } from '../../src/services/datasets.js';
import { getJob, startTraining } from '../../src/services/training.js';
import { createWorkerRuntime, type WorkerRuntime } from '../../src/train/runtime.js';
import { bufferStream, makeShapesDataset, zipClassFolders } from '../helpers/datasets.js';
import { tinySwinFiles } from '../helpers/tiny-swin.js';
import { openServiceFixture, type ServiceFixture } from '../train/service-fixture.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function writeTinySwinDir(dir: string): Promise<void> {
  // 32 px, patch 4: stages of 8×8 / 4×4 / 2×2 tokens, 16 / 32 / 64 wide, 2 blocks each.
  const files = tinySwinFiles({ embedDim: 16, depths: [2, 2, 2], heads: [1, 2, 4], windowSize: 4, patchSize: 4, imageSize: 32, seed: 7 });
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'model.safetensors'), files.model);
  await writeFile(path.join(dir, 'config.json'), files.config);
}

describe('a training job on a Swin backbone', () => {
  let f: ServiceFixture;
  let runtime: WorkerRuntime;

  beforeAll(async () => {
    f = await openServiceFixture('pglite', {}, writeTinySwinDir);
    const queue = new JobQueue(f.db.db, { leaseMs: 6000, maxAttempts: 3, backoff: { baseMs: 50, maxMs: 200 } });
    runtime = createWorkerRuntime(f.deps, { queue, pollMs: 50, cachePrecision: 'float16' });
  });
  afterAll(async () => {
    await runtime?.stop({ graceMs: 5000 });
    await f?.close();
  });

  it('trains, publishes a Swin adapter with the Swin defaults, and it classifies held-out shapes', async () => {
    expect(f.deps.backbone.config.swin).toBeDefined();
    const tensorsBefore = tf.memory().numTensors;
    const images = await makeShapesDataset({ classes: 4, perClass: 24, size: 32, seed: 3 });
    const up = await createDataset({ deps: f.deps, ctx: f.ctx, input: { name: 'shapes', source: bufferStream(await zipClassFolders(images)), contentType: 'application/zip' } });
    const { adapter, job } = await startTraining({
      deps: f.deps,
      ctx: f.ctx,
      input: { datasetId: up.dataset.id, adapterName: 'swin-shapes', hyperparameters: { epochs: 10, warmupEpochs: 1, batchSize: 16, lr: 3e-2, variant: 'dtl', seed: 1, patience: 0 } },
    });
    runtime.start();
    const end = Date.now() + 120_000;
    let done = await getJob({ deps: f.deps, ctx: f.ctx, id: job.id });
    while (!['succeeded', 'failed', 'cancelled'].includes(done.status) && Date.now() < end) {
      await sleep(50);
      done = await getJob({ deps: f.deps, ctx: f.ctx, id: job.id });
    }
    expect(done.status, String(done.error)).toBe('succeeded');
    expect(tf.memory().numTensors).toBe(tensorsBefore);

    const [v] = await adaptersRepo.listVersions(f.db.db, f.ctx.tenantId, adapter.id);
    const m = v.metrics as { cache: { computed: number; hits: number }; hyperparameters: Record<string, unknown> };
    expect(m.hyperparameters).toMatchObject({ rank: 8, lr: 3e-2, variant: 'dtl' }); // swinAutoRank of the narrowest read (32 wide)
    expect(m.cache.hits).toBeGreaterThan(0);
    const loaded = loadAdapter(await f.blobs.getBuffer(v.objectKey), f.deps.backbone.config);
    try {
      expect(loaded.adapter.spec).toMatchObject({ loraBeforeBlocks: [2, 3, 4, 5], addAfterBlocks: [3, 4, 5] });
      const heldOut = await makeShapesDataset({ classes: 4, perClass: 8, size: 32, seed: 901 });
      const pixels = imagesToTensor(await Promise.all(heldOut.map((img) => preprocessImage(img.data, f.deps.backbone.config))), f.deps.backbone.config);
      const logits = predictLogits(f.deps.backbone, loaded.adapter, pixels);
      const predicted = Array.from(logits.argMax(1).dataSync());
      tf.dispose([logits, pixels]);
      const labels = loaded.adapter.spec.labels;
      const accuracy = predicted.filter((p, i) => labels[p] === heldOut[i].label).length / heldOut.length;
      expect(accuracy).toBeGreaterThanOrEqual(0.6); // 4 classes: chance 0.25
    } finally {
      loaded.adapter.dispose();
    }
  });
});
