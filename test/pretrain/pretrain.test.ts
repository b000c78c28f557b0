import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backboneFeatures, initBackend, loadBackboneFromDir } from '../../src/model/index.js';
import { runPretrain } from '../../scripts/pretrain/run.js';
import { stepLr } from '../../scripts/pretrain/train.js';
import { writeFakeFashionMnist } from './idx-fixture.js';

describe('pretraining (one tiny run on fake Fashion-MNIST)', () => {
  let dir: string;
  beforeAll(async () => {
    await initBackend('wasm');
    dir = await mkdtemp(path.join(os.tmpdir(), 'pretrain-'));
    await writeFakeFashionMnist(path.join(dir, 'data'), { train: 6, test: 2 });
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes a Hugging Face ViT folder that the service loads and that matches the trained model', async () => {
    const before = tf.memory().numTensors;
    const out = path.join(dir, 'backbone');
    const lines: string[] = [];
    const s = await runPretrain({
      out,
      dataDir: path.join(dir, 'data'),
      shape: { width: 16, depth: 2, heads: 2, mlpDim: 32, patchSize: 7, imageSize: 28 },
      epochs: 1,
      batchSize: 8,
      lr: 1e-3,
      minLr: 1e-5,
      warmupEpochs: 0.5,
      weightDecay: 0.05,
      labelSmoothing: 0.1,
      shift: 2,
      flip: true,
      seed: 3,
      valSize: 6,
      limit: 0,
      testLimit: 0,
      command: 'npm run pretrain -- (test)',
      log: (l) => lines.push(l),
    });
    // Six pretraining classes × 6 train images, minus 6 for validation; 6 × 2 test images.
    expect(s.trainImages).toBe(30);
    expect(s.valImages).toBe(6);
    expect(s.testImages).toBe(12);
    expect(s.epochs).toHaveLength(1);
    expect(Number.isFinite(s.epochs[0].loss)).toBe(true);
    expect(s.testAcc).toBeGreaterThanOrEqual(0);
    expect(s.reloadMaxDiff).toBeLessThan(1e-4);
    expect(tf.memory().numTensors).toBe(before);

    const config = JSON.parse(await readFile(path.join(out, 'config.json'), 'utf8'));
    expect(config).toMatchObject({ model_type: 'vit', hidden_size: 16, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 32, patch_size: 7, image_size: 28, num_channels: 3 });
    const pre = JSON.parse(await readFile(path.join(out, 'preprocessor_config.json'), 'utf8'));
    expect(pre.image_mean).toEqual([s.mean, s.mean, s.mean]);
    expect(pre.image_std).toEqual([s.std, s.std, s.std]);
    expect((await stat(path.join(out, 'model.safetensors'))).size).toBe(s.modelBytes);
    const md = await readFile(path.join(out, 'TRAINING.md'), 'utf8');
    expect(md).toContain('Test accuracy on the held-in classes');
    expect(md).toContain('| 1 |');
    expect(lines.some((l) => l.includes('held out for transfer: Shirt, Sneaker, Bag, Ankle boot'))).toBe(true);

    const bb = await loadBackboneFromDir(out);
    try {
      expect(bb.config).toMatchObject({ width: 16, depth: 2, heads: 2, mlpDim: 32, tokens: 17 });
      const f = tf.tidy(() => backboneFeatures(bb, tf.zeros([2, 28, 28, 3])));
      expect(f.shape).toEqual([2, 16]);
      f.dispose();
    } finally {
      bb.dispose();
    }
  });

  it('warms up linearly, then decays by cosine to the floor', () => {
    expect(stepLr(0, 100, 10, 1, 0)).toBeCloseTo(0.1);
    expect(stepLr(9, 100, 10, 1, 0)).toBeCloseTo(1);
    expect(stepLr(55, 100, 10, 1, 0)).toBeCloseTo(0.5);
    expect(stepLr(100, 100, 10, 1, 0.01)).toBeCloseTo(0.01);
  });
});
