import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, describe, expect, it } from 'vitest';
import { backboneFeatures, initBackend, loadBackbone } from '../../src/model/index.js';
import { spawnThread } from '../../src/threads/spawn.js';

describe('compute threads', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it.each(['tfjs', 'onnxruntime'])('a thread started from the environment loads the same backbone and computes the same features (%s)', async (engine) => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'dtl-thread-'));
    dirs.push(dataDir);
    const size = 28;
    const images = Float32Array.from({ length: 2 * size * size * 3 }, (_, i) => Math.sin(i * 0.37));
    const env = { BACKBONE: 'backbones/default', DATA_DIR: dataDir, BACKBONE_ENGINE: engine, TFJS_BACKEND: 'wasm', LOG_LEVEL: 'silent' };
    const thread = spawnThread(new URL('./probe-thread.ts', import.meta.url), { env, images, size });
    const [answer] = (await once(thread, 'message')) as [{ identity: string; backend: string; engine: string; features: Float32Array; tensors: number }];
    await once(thread, 'exit');

    await initBackend('wasm');
    const backbone = await loadBackbone('backbones/default');
    const expected = tf.tidy(() => backboneFeatures(backbone, tf.tensor4d(images, [2, size, size, 3])).dataSync());
    backbone.dispose();
    expect(answer.identity).toBe(backbone.identity);
    expect(answer.backend).toBe('wasm');
    expect(answer.engine).toBe(engine);
    expect(answer.features.length).toBe(expected.length);
    let worst = 0;
    for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(answer.features[i] - expected[i]));
    expect(worst).toBeLessThan(engine === 'tfjs' ? 1e-6 : 1e-4);
  }, 60_000);
});
