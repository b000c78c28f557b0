/**
 * The Swin backbone and its CSN against the authors' maths (scripts/fixtures/swin_dtl_reference.py:
 * Hugging Face SwinModel layout, the authors' per-stage reads/additions with the accumulator reset
 * at every stage, per-stage DTL+ convs): `dtl-host predict` and the split path to 1e-4, an
 * untrained adapter equal to the backbone, the several-adapter suffix equal to each alone, the
 * authors' file names round-tripping, and training steps.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AdamW,
  backboneFeatures,
  createAdapter,
  disposePrefix,
  forwardSuffix,
  imagesToTensor,
  initBackend,
  loadAdapter,
  loadBackboneFromDir,
  measurePeakBytes,
  predictLogits,
  preprocessImage,
  readSafetensors,
  runPrefix,
  saveAdapter,
  splitPoint,
  suffixFeatures,
  trainStep,
  trainStepFullTape,
  type Adapter,
  type AdapterSpec,
  type Backbone,
} from '../../src/model/index.js';
import { randomAdapter } from '../helpers/tiny-backbone.js';
import { maxAbsDiff } from './expect.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const FIXTURES = path.join(ROOT, 'test/fixtures');
const run = promisify(execFile);

interface Expected {
  cases: Array<{ image: string; logits: number[]; probabilities: number[]; top1: string; backboneFeatures: number[] }>;
}
const expectedOf = (dir: string) => JSON.parse(readFileSync(path.join(dir, 'expected.json'), 'utf8')) as Expected;

describe.each(['dtl-golden-swin-hf', 'dtl-golden-swin-plus'])('dtl-host predict on the Swin fixture %s', (name) => {
  it.each(['tfjs', 'onnxruntime'])('matches expected.json to 1e-4 (BACKBONE_ENGINE=%s; onnxruntime falls back to tfjs, logged)', async (engine) => {
    const dir = path.join(FIXTURES, name);
    const expected = expectedOf(dir);
    const images = expected.cases.map((c) => path.join(dir, c.image));
    const { stdout, stderr } = await run(process.execPath, [path.join(ROOT, 'bin/dtl-host.js'), 'predict', '--verbose', '--backbone', dir, '--adapter', path.join(dir, 'adapter.safetensors'), ...images], {
      cwd: ROOT,
      env: { ...process.env, TFJS_BACKEND: 'wasm', BACKBONE_ENGINE: engine },
      timeout: 60_000,
    });
    if (engine === 'onnxruntime') expect(stderr).toMatch(/backbone engine: tfjs .*Swin/);
    else expect(stderr).not.toMatch(/Swin/);
    const out = JSON.parse(stdout) as Array<{ logits: number[]; probabilities: number[]; top: Array<{ label: string }> }>;
    expect(out).toHaveLength(expected.cases.length);
    out.forEach((o, i) => {
      expect(maxAbsDiff(o.logits, expected.cases[i].logits)).toBeLessThan(1e-4);
      expect(maxAbsDiff(o.probabilities, expected.cases[i].probabilities)).toBeLessThan(1e-4);
      expect(o.top[0].label).toBe(expected.cases[i].top1);
    });
  });
});

describe('Swin backbone in the model core', () => {
  const dir = path.join(FIXTURES, 'dtl-golden-swin-hf');
  const plusDir = path.join(FIXTURES, 'dtl-golden-swin-plus');
  const expected = expectedOf(dir);
  let backbone: Backbone;
  let dtl: Adapter;
  let plus: Adapter;
  let pixels: tf.Tensor4D;

  beforeAll(async () => {
    await initBackend('wasm');
    backbone = await loadBackboneFromDir(dir);
    dtl = loadAdapter(readFileSync(path.join(dir, 'adapter.safetensors')), backbone.config).adapter;
    plus = loadAdapter(readFileSync(path.join(plusDir, 'adapter.safetensors')), backbone.config).adapter;
    const images = await Promise.all(expected.cases.map((c) => preprocessImage(readFileSync(path.join(dir, c.image)), backbone.config)));
    pixels = imagesToTensor(images, backbone.config);
  });
  afterAll(() => {
    for (const x of [pixels, dtl, plus, backbone]) x?.dispose();
  });

  it('reads the HF config: stages, widths, windows and shifts (no shift where the window covers the grid)', () => {
    const a = backbone.config.swin!;
    expect(backbone.config).toMatchObject({ width: 64, depth: 8, imageSize: 64, patchSize: 2, tokens: 1024 });
    expect(a.stageWidths).toEqual([8, 16, 32, 64]);
    expect(a.stageGrids).toEqual([32, 16, 8, 4]);
    expect(a.blockShift).toEqual([0, 2, 0, 2, 0, 2, 0, 0]);
    expect(backbone.config.mean).toEqual([0.485, 0.456, 0.406]);
  });

  it('backbone features and both adapters\u2019 logits match the reference to 1e-4', () => {
    const features = backboneFeatures(backbone, pixels);
    const got = features.arraySync();
    features.dispose();
    expected.cases.forEach((c, i) => expect(maxAbsDiff(got[i], c.backboneFeatures)).toBeLessThan(1e-4));
    for (const [adapter, exp] of [[dtl, expected], [plus, expectedOf(plusDir)]] as const) {
      const logits = predictLogits(backbone, adapter, pixels);
      const values = logits.arraySync();
      logits.dispose();
      exp.cases.forEach((c, i) => expect(maxAbsDiff(values[i], c.logits)).toBeLessThan(1e-4));
    }
  });

  it('an untrained adapter (B = 0) gives the backbone\u2019s own features, whatever its split', () => {
    const reference = backboneFeatures(backbone, pixels);
    const specs: AdapterSpec[] = [
      { rank: 2, beta: 100, loraBeforeBlocks: [0, 1, 2, 3, 4, 5, 6, 7], addAfterBlocks: [0, 1, 2, 3, 4, 5, 6, 7], fusionKernel: 0, labels: ['a', 'b'] },
      { rank: 4, beta: 100, loraBeforeBlocks: [2, 3, 5], addAfterBlocks: [3, 5, 7], fusionKernel: 3, labels: ['a', 'b', 'c'] },
    ];
    const before = tf.memory().numTensors;
    for (const spec of specs) {
      const adapter = createAdapter(backbone.config, spec, { seed: 4 });
      const state = runPrefix(backbone, pixels, splitPoint(spec, backbone.config.depth));
      const [features] = suffixFeatures(backbone, state, [{ adapter, rows: [0, 1] }]);
      expect(maxAbsDiff(features.dataSync(), reference.dataSync())).toBeLessThan(1e-5);
      features.dispose();
      disposePrefix(state);
      adapter.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
    reference.dispose();
  });

  it('one prefix + one suffix call for several adapters (mixed splits, DTL and DTL+, fan-out) equals each alone (1e-5)', () => {
    const extra = randomAdapter(backbone.config, { rank: 3, beta: 50, loraBeforeBlocks: [5, 6], addAfterBlocks: [6, 7], fusionKernel: 2, labels: ['x', 'y'] }, 7, 0.2);
    const adapters = [dtl, plus, extra];
    const split = Math.min(...adapters.map((a) => splitPoint(a.spec, backbone.config.depth)));
    const before = tf.memory().numTensors;
    const state = runPrefix(backbone, pixels, split);
    const groups = [{ adapter: dtl, rows: [1, 0] }, { adapter: plus, rows: [0] }, { adapter: extra, rows: [1, 1, 0] }];
    const logits = forwardSuffix(backbone, state, groups);
    groups.forEach((g, k) => {
      const alone = predictLogits(backbone, g.adapter, pixels);
      const rows = alone.arraySync();
      const got = logits[k].arraySync();
      g.rows.forEach((r, j) => expect(maxAbsDiff(got[j], rows[r])).toBeLessThan(1e-5));
      alone.dispose();
    });
    for (const l of logits) l.dispose();
    disposePrefix(state);
    expect(tf.memory().numTensors).toBe(before);
    extra.dispose();
  });

  it('saves under the authors\u2019 Swin names and reloads to the same logits; a ViT/Swin mix-up is a mismatch', () => {
    const bytes = saveAdapter(plus);
    const names = [...readSafetensors(bytes).tensors.keys()];
    expect(names).toEqual(expect.arrayContaining(['lora_dict.0.lora_A', 'lora_dict.7.lora_B', 'lora_fusions.0.weight', 'lora_fusions.3.weight', 'head.weight', 'head.bias']));
    expect(readSafetensors(bytes).tensors.get('lora_fusions.3.weight')!.shape).toEqual([64, 1, 4, 4]);
    const again = loadAdapter(bytes, backbone.config).adapter;
    const [a, b] = [predictLogits(backbone, plus, pixels), predictLogits(backbone, again, pixels)];
    expect(maxAbsDiff(a.dataSync(), b.dataSync())).toBe(0);
    for (const x of [a, b, again]) x.dispose();
    const vitConfig = { ...backbone.config, swin: undefined };
    expect(() => loadAdapter(bytes, vitConfig)).toThrow(/Swin backbone, but this backbone is a ViT/);
  });

  it('training: steps lower the loss, the blockwise step equals the full tape, recomputation changes nothing, nothing leaks', () => {
    const spec: AdapterSpec = { rank: 2, beta: 100, loraBeforeBlocks: [4, 5, 6, 7], addAfterBlocks: [5, 6, 7], fusionKernel: 3, labels: ['a', 'b'] };
    const seeded = randomAdapter(backbone.config, spec, 11, 0.1);
    const start = saveAdapter(seeded);
    seeded.dispose();
    const load = () => loadAdapter(start, backbone.config, { trainable: true }).adapter;
    const [a, b, c] = [load(), load(), load()];
    const [oa, ob, oc] = [new AdamW({ lr: 3e-2 }), new AdamW({ lr: 3e-2 }), new AdamW({ lr: 3e-2 })];
    const labels = [0, 1];
    const state = runPrefix(backbone, pixels, splitPoint(spec, backbone.config.depth));
    const losses: number[] = [];
    let tensors = 0;
    for (let step = 0; step < 4; step++) {
      const la = trainStep({ backbone, adapter: a, optimizer: oa, state, labels }).loss;
      const lb = trainStepFullTape({ backbone, adapter: b, optimizer: ob, pixels, labels });
      const lc = trainStep({ backbone, adapter: c, optimizer: oc, state, labels, tapeBlocks: 0 }).loss;
      expect(Math.abs(la - lb)).toBeLessThan(1e-5);
      expect(Math.abs(la - lc)).toBeLessThan(1e-5);
      losses.push(la);
      if (step === 0) tensors = tf.memory().numTensors;
    }
    expect(tf.memory().numTensors).toBe(tensors);
    losses.slice(1).forEach((l, i) => expect(l).toBeLessThan(losses[i]));
    const [va, vb] = [a.trainableVariables(), b.trainableVariables()];
    va.forEach((v, i) => expect(maxAbsDiff(v.dataSync(), vb[i].dataSync())).toBeLessThan(1e-5));
    disposePrefix(state);
    for (const x of [a, b, c, oa, ob, oc]) x.dispose();
  });

  it('training memory: the prefix outside the tape and block-wise recomputation keep the peak well below the tape over all blocks', async () => {
    // Swin-B's recipe shape on 2+2+2+2 blocks: read from stage 1 on, add from mid stage 2 (blocks 0..4 shared).
    const spec: AdapterSpec = { rank: 2, beta: 100, loraBeforeBlocks: [2, 3, 4, 5, 6, 7], addAfterBlocks: [4, 5, 6, 7], fusionKernel: 3, labels: ['a', 'b'] };
    const adapter = createAdapter(backbone.config, spec, { seed: 5 });
    const optimizer = new AdamW();
    const labels = [0, 1];
    const split = splitPoint(spec, backbone.config.depth);
    const step = (state: ReturnType<typeof runPrefix>, tapeBlocks?: number) =>
      trainStep({ backbone, adapter, optimizer, state, labels, ...(tapeBlocks === undefined ? {} : { tapeBlocks }) }).loss;
    const withPrefix = (tapeBlocks?: number) => {
      const s = runPrefix(backbone, pixels, split);
      const loss = step(s, tapeBlocks);
      disposePrefix(s);
      return loss;
    };
    withPrefix(); // moments allocated before measuring
    const outside = await measurePeakBytes(() => withPrefix());
    const fullTape = await measurePeakBytes(() => trainStepFullTape({ backbone, adapter, optimizer, pixels, labels }));
    // The prefix cached (as the trainer's prefix store does): what the suffix's tape costs.
    const cachedState = runPrefix(backbone, pixels, split);
    const taped = await measurePeakBytes(() => step(cachedState));
    const recomputed = await measurePeakBytes(() => step(cachedState, 0));
    disposePrefix(cachedState);
    const kib = (b: number) => `${Math.round(b / 1024)} KiB`;
    console.log(
      `Swin training step peak (fixture, batch 2, split ${split}): tape over all blocks ${kib(fullTape.peakBytes)}, prefix outside the tape ${kib(outside.peakBytes)}; ` +
        `prefix cached: suffix taped ${kib(taped.peakBytes)}, block-wise recomputation ${kib(recomputed.peakBytes)}`,
    );
    expect(outside.peakBytes).toBeLessThan(0.6 * fullTape.peakBytes);
    expect(recomputed.peakBytes).toBeLessThan(taped.peakBytes);
    adapter.dispose();
    optimizer.dispose();
  });

  it('a grouped step on a Swin equals separate steps', () => {
    const specs: AdapterSpec[] = [
      { rank: 2, beta: 100, loraBeforeBlocks: [6, 7], addAfterBlocks: [6, 7], fusionKernel: 0, labels: ['a', 'b'] },
      { rank: 2, beta: 100, loraBeforeBlocks: [5, 6, 7], addAfterBlocks: [7], fusionKernel: 2, labels: ['a', 'b'] },
    ];
    const files = specs.map((s, k) => {
      const seeded = randomAdapter(backbone.config, s, 30 + k, 0.1);
      const bytes = saveAdapter(seeded);
      seeded.dispose();
      return bytes;
    });
    const grouped = files.map((f) => loadAdapter(f, backbone.config, { trainable: true }).adapter);
    const alone = files.map((f) => loadAdapter(f, backbone.config, { trainable: true }).adapter);
    const opts = [...grouped, ...alone].map(() => new AdamW({ lr: 1e-2 }));
    const state = runPrefix(backbone, pixels, 6);
    const r = trainStep({ backbone, state, groups: grouped.map((adapter, k) => ({ adapter, optimizer: opts[k], rows: [1, 0], labels: [k, 1 - k] })) });
    const reversed = tf.reverse(pixels, 0) as tf.Tensor4D;
    alone.forEach((adapter, k) => {
      const sub = runPrefix(backbone, reversed, 6);
      const l = trainStep({ backbone, state: sub, adapter, optimizer: opts[2 + k], labels: [k, 1 - k] }).loss;
      expect(Math.abs(l - r.groups[k].loss)).toBeLessThan(1e-5);
      const [vg, va] = [grouped[k].trainableVariables(), adapter.trainableVariables()];
      vg.forEach((v, i) => expect(maxAbsDiff(v.dataSync(), va[i].dataSync())).toBeLessThan(1e-5));
      disposePrefix(sub);
    });
    disposePrefix(state);
    for (const x of [reversed, ...grouped, ...alone, ...opts]) x.dispose();
  });
});
