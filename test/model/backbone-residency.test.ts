/**
 * Where the frozen weights live (model/backbone-residency.ts): a deferred backbone makes tfjs
 * tensors only for the parts read; settled on 'native' after onnxruntime took the weights, it holds
 * only the final norm in tfjs, still matches the golden logits, and refuses a tfjs read of a
 * dropped part with a clear error; settled on 'tfjs' it is what an eager load is.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  detachNative,
  enginePredict,
  holdsInTfjs,
  initBackend,
  loadAdapter,
  loadBackboneFromDir,
  preprocessImage,
  settleBackboneWeights,
  startBackboneEngine,
} from '../../src/model/index.js';
import { expectAppError, maxAbsDiff } from './expect.js';

const DIR = path.resolve(import.meta.dirname, '../fixtures/dtl-golden-hf');
const expected = JSON.parse(readFileSync(path.join(DIR, 'expected.json'), 'utf8')) as { cases: Array<{ image: string; logits: number[] }> };
const ENGINE = { threads: 1, provider: 'cpu' } as const;

describe('backbone weight residency', () => {
  let images: Float32Array[];
  beforeAll(async () => {
    await initBackend('wasm');
    const b = await loadBackboneFromDir(DIR);
    images = await Promise.all(expected.cases.map((c) => preprocessImage(readFileSync(path.join(DIR, c.image)), b.config)));
    b.dispose();
  });

  it('an eager load holds every part in tfjs; a deferred one makes only the parts read', async () => {
    const before = tf.memory().numTensors;
    const eager = await loadBackboneFromDir(DIR);
    const eagerTensors = tf.memory().numTensors - before;
    expect(['embed', 'norm', 'block0', `block${eager.config.depth - 1}`].every((p) => holdsInTfjs(eager, p))).toBe(true);
    eager.dispose();
    expect(tf.memory().numTensors).toBe(before);

    const lazy = await loadBackboneFromDir(DIR, { deferResidency: true });
    expect(tf.memory().numTensors).toBe(before);
    expect(holdsInTfjs(lazy, 'block1')).toBe(false);
    expect(lazy.blocks[1].w1.shape).toEqual([lazy.config.width, lazy.config.mlpDim]);
    expect(tf.memory().numTensors - before).toBe(16); // one block's tensors
    expect(holdsInTfjs(lazy, 'block1')).toBe(true);
    settleBackboneWeights(lazy, 'tfjs');
    expect(tf.memory().numTensors - before).toBe(eagerTensors);
    lazy.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it("settled on 'native', only the final norm is in tfjs; the golden logits still match; a dropped part's read fails clearly", async () => {
    const golden = await loadBackboneFromDir(DIR);
    const adapter = loadAdapter(readFileSync(path.join(DIR, 'adapter.safetensors')), golden.config).adapter;
    const bytesBefore = tf.memory().numBytes;
    const tensorsBefore = tf.memory().numTensors;
    const b = await loadBackboneFromDir(DIR, { deferResidency: true });
    expect(await startBackboneEngine(b, 'onnxruntime', ENGINE)).toBe('onnxruntime');
    settleBackboneWeights(b, 'native');
    expect(holdsInTfjs(b, 'norm')).toBe(true);
    expect(holdsInTfjs(b, 'embed') || holdsInTfjs(b, 'block0')).toBe(false);
    expect(tf.memory().numBytes - bytesBefore).toBe(2 * b.config.width * 4);
    for (let round = 0; round < 3; round++) {
      const logits = await enginePredict(b, adapter, images);
      const rows = logits.arraySync();
      logits.dispose();
      expected.cases.forEach((c, i) => expect(maxAbsDiff(rows[i], c.logits)).toBeLessThan(1e-4));
      expect(tf.memory().numTensors - tensorsBefore).toBe(2);
    }
    expectAppError(() => b.blocks[0], 'internal', /onnxruntime only/);
    expectAppError(() => b.patchFilter, 'internal', /patch embedding/);
    await detachNative(b);
    b.dispose();
    adapter.dispose();
    golden.dispose();
  });
});
