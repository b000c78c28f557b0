/**
 * The backbone engine seam: the golden fixtures on onnxruntime and on tfjs (prefix against
 * runPrefix, logits against the authors'), a mixed multi-adapter batch on the native suffix against
 * each adapter alone on tfjs, an untrained adapter against the backbone, no tensor left behind,
 * and start-up when onnxruntime cannot load (auto → tfjs; onnxruntime → a clear error).
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  backboneFeatures,
  createAdapter,
  detachNative,
  disposePrefix,
  enginePredict,
  enginePrefix,
  enginePrefixArrays,
  engineSuffix,
  imagesToTensor,
  initBackend,
  loadAdapter,
  loadBackboneFromDir,
  nativeOf,
  predictLogits,
  preprocessImage,
  runPrefix,
  saveAdapter,
  startBackboneEngine,
  type Adapter,
  type AdapterSpec,
  type Backbone,
} from '../../src/model/index.js';
import { engineOptions, loadConfig } from '../../src/config.js';
import type { BackboneConfig } from '../../src/model/backbone-config.js';
import { initEngine, processCores } from '../../src/model/native/engine.js';
import { SEGMENT_BYTES, segmentsOf } from '../../src/model/native/native-backbone.js';
import { randomAdapter } from '../helpers/tiny-backbone.js';
import { expectAppError, maxAbsDiff } from './expect.js';

const FIXTURES = path.resolve(import.meta.dirname, '../fixtures');
const ENGINE = { threads: 1, provider: 'cpu' } as const;

interface Expected {
  cases: Array<{ image: string; logits: number[]; top1: string }>;
}

const rowsOf = (t: tf.Tensor2D): number[][] => {
  const v = t.arraySync();
  t.dispose();
  return v;
};

// One segment (the whole backbone in one session) and one block per segment (as ViT-B is cut).
describe.each([
  ['dtl-golden-hf', undefined],
  ['dtl-golden-timm-plus', undefined],
  ['dtl-golden-hf', 1],
  ['dtl-golden-timm-plus', 1],
] as const)('backbone engines on the golden fixture %s (segment bytes %s)', (name, segmentBytes) => {
  const dir = path.join(FIXTURES, name);
  const expected = JSON.parse(readFileSync(path.join(dir, 'expected.json'), 'utf8')) as Expected;
  let backbone: Backbone;
  let golden: Adapter;
  let images: Float32Array[];

  beforeAll(async () => {
    await initBackend('wasm');
    backbone = await loadBackboneFromDir(dir);
    golden = loadAdapter(readFileSync(path.join(dir, 'adapter.safetensors')), backbone.config).adapter;
    images = await Promise.all(expected.cases.map((c) => preprocessImage(readFileSync(path.join(dir, c.image)), backbone.config)));
    expect(await startBackboneEngine(backbone, 'onnxruntime', { ...ENGINE, segmentBytes })).toBe('onnxruntime');
    const depth = backbone.config.depth;
    expect(nativeOf(backbone)!.layout).toEqual(segmentBytes === 1 ? [...Array(depth).keys()].map((i) => [i, i + 1]) : [[0, depth]]);
  });
  afterAll(async () => {
    await detachNative(backbone);
    golden.dispose();
    backbone.dispose();
  });

  it('the native prefix equals runPrefix at every split (block inputs and output, 1e-4)', async () => {
    const pixels = imagesToTensor(images, backbone.config);
    for (const split of [0, 1, backbone.config.depth]) {
      const ref = runPrefix(backbone, pixels, split);
      const got = await enginePrefix(backbone, images, split);
      expect(got.inputs).toHaveLength(split);
      for (let i = 0; i < split; i++) expect(maxAbsDiff(got.inputs[i].dataSync(), ref.inputs[i].dataSync())).toBeLessThan(1e-4);
      expect(maxAbsDiff(got.x.dataSync(), ref.x.dataSync())).toBeLessThan(1e-4);
      // The native path really ran: onnxruntime's float32 sums differ from tfjs's in the last bits.
      if (split > 0) expect(maxAbsDiff(got.x.dataSync(), ref.x.dataSync())).toBeGreaterThan(0);
      disposePrefix(ref);
      disposePrefix(got);
    }
    pixels.dispose();
  });

  it.each(['onnxruntime', 'tfjs'] as const)('enginePredict on %s matches expected.json to 1e-4', async (engine) => {
    if (engine === 'tfjs') await detachNative(backbone);
    try {
      expect(nativeOf(backbone) === undefined).toBe(engine === 'tfjs');
      const got = rowsOf(await enginePredict(backbone, golden, images));
      expected.cases.forEach((c, i) => {
        expect(maxAbsDiff(got[i], c.logits)).toBeLessThan(1e-4);
        expect(golden.spec.labels[got[i].indexOf(Math.max(...got[i]))]).toBe(c.top1);
      });
    } finally {
      if (engine === 'tfjs') await startBackboneEngine(backbone, 'onnxruntime', { ...ENGINE, segmentBytes });
    }
  });

  it('a mixed batch on the native suffix (DTL and DTL+, fan-out) equals each adapter alone on tfjs (1e-4)', async () => {
    const specs: AdapterSpec[] = [
      { rank: 2, beta: 100, loraBeforeBlocks: [0, 1, 2, 3], addAfterBlocks: [0, 1, 2, 3], fusionKernel: 0, labels: ['p', 'q'] },
      { rank: 3, beta: 50, loraBeforeBlocks: [1, 3], addAfterBlocks: [3], fusionKernel: 4, labels: ['a', 'b', 'c', 'd', 'e'] },
      { rank: 1, beta: 100, loraBeforeBlocks: [0, 2], addAfterBlocks: [2, 3], fusionKernel: 3, labels: ['x', 'y', 'z'] },
    ];
    const extra = specs.map((spec, i) => {
      const trained = randomAdapter(backbone.config, spec, 20 + i, 0.2);
      const loaded = loadAdapter(saveAdapter(trained), backbone.config).adapter;
      trained.dispose();
      return loaded;
    });
    const groups = [
      { adapter: golden, rows: [0, 1, 2] },
      { adapter: extra[0], rows: [2, 0] },
      { adapter: extra[1], rows: [1] },
      { adapter: extra[2], rows: [0, 0, 2] },
    ];
    const before = tf.memory().numTensors;
    const state = await enginePrefix(backbone, images, 1);
    const batched = (await engineSuffix(backbone, state, groups)).map(rowsOf);
    disposePrefix(state);
    expect(tf.memory().numTensors).toBe(before);

    const pixels = imagesToTensor(images, backbone.config);
    groups.forEach((g, gi) => {
      const alone = rowsOf(predictLogits(backbone, g.adapter, pixels));
      g.rows.forEach((r, k) => expect(maxAbsDiff(batched[gi][k], alone[r])).toBeLessThan(1e-4));
    });
    // Adapters that differ must differ by far more than the tolerance, or a swap would pass.
    expect(maxAbsDiff(batched[1][0].slice(0, 2), batched[3][0].slice(0, 2))).toBeGreaterThan(1e-2);
    pixels.dispose();
    for (const a of extra) a.dispose();
  });

  it('a suffix stretch with nothing between its blocks runs as one range and still equals tfjs (1e-4)', async () => {
    const depth = backbone.config.depth;
    // Reads block 0 and adds after block 0 only: blocks 1..depth−1 are one quiet stretch.
    const spec: AdapterSpec = { rank: 2, beta: 100, loraBeforeBlocks: [0], addAfterBlocks: [0], fusionKernel: 3, labels: ['a', 'b'] };
    const trained = randomAdapter(backbone.config, spec, 31, 0.2);
    const native = nativeOf(backbone)!;
    const ranges: Array<[number, number]> = [];
    const blocks = native.blocks.bind(native);
    native.blocks = (from, to, x, n) => {
      ranges.push([from, to]);
      return blocks(from, to, x, n);
    };
    try {
      const got = rowsOf(await enginePredict(backbone, trained, images));
      expect(ranges).toEqual([[1, depth]]);
      const pixels = imagesToTensor(images, backbone.config);
      const ref = rowsOf(predictLogits(backbone, trained, pixels));
      pixels.dispose();
      got.forEach((row, i) => expect(maxAbsDiff(row, ref[i])).toBeLessThan(1e-4));
    } finally {
      native.blocks = blocks;
      trained.dispose();
    }
  });

  it('an untrained adapter (B = 0) on the native engine gives the backbone: head(pooled features)', async () => {
    const spec: AdapterSpec = { rank: 2, beta: 100, loraBeforeBlocks: [0, 1, 2, 3], addAfterBlocks: [1, 2, 3], fusionKernel: 3, labels: ['a', 'b'] };
    const fresh = createAdapter(backbone.config, spec, { seed: 5 });
    const pixels = imagesToTensor(images, backbone.config);
    const features = backboneFeatures(backbone, pixels);
    const reference = rowsOf(tf.tidy(() => tf.add(tf.matMul(features, fresh.headW), fresh.headB) as tf.Tensor2D));
    const got = rowsOf(await enginePredict(backbone, fresh, images));
    got.forEach((row, i) => expect(maxAbsDiff(row, reference[i])).toBeLessThan(1e-4));
    for (const t of [features, pixels]) t.dispose();
    fresh.dispose();
  });

  it('repeated native prefix / suffix / prefix-array calls leave no tensor behind', async () => {
    const run = async () => {
      rowsOf(await enginePredict(backbone, golden, images));
      await enginePrefixArrays(backbone, images, 2, [0, 1]);
    };
    await run();
    const before = tf.memory().numTensors;
    for (let k = 0; k < 3; k++) await run();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('the prefix arrays equal the native prefix state', async () => {
    const arrays = await enginePrefixArrays(backbone, images, 3, [1, 2]);
    const state = await enginePrefix(backbone, images, 3);
    expect(maxAbsDiff(arrays.inputs[0], state.inputs[1].dataSync())).toBe(0);
    expect(maxAbsDiff(arrays.inputs[1], state.inputs[2].dataSync())).toBe(0);
    expect(maxAbsDiff(arrays.x, state.x.dataSync())).toBe(0);
    disposePrefix(state);
  });
});

describe('engine start-up when onnxruntime cannot load', () => {
  let backbone: Backbone;
  const missing = { ...ENGINE, moduleName: 'onnxruntime-node-not-installed' };

  beforeAll(async () => {
    await initBackend('wasm');
    backbone = await loadBackboneFromDir(path.join(FIXTURES, 'dtl-golden-hf'));
  });
  afterAll(() => backbone.dispose());

  it('auto falls back to tfjs and says why', async () => {
    const lines: string[] = [];
    expect(await startBackboneEngine(backbone, 'auto', missing, (m) => lines.push(m))).toBe('tfjs');
    expect(nativeOf(backbone)).toBeUndefined();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^backbone engine: tfjs \(onnxruntime-node-not-installed could not be used: .+\)$/);
  });

  it('onnxruntime fails start-up with config_invalid naming the module', async () => {
    await expectAppError(() => startBackboneEngine(backbone, 'onnxruntime', missing), 'config_invalid', /BACKBONE_ENGINE=onnxruntime but onnxruntime-node-not-installed could not be used/);
    expect(nativeOf(backbone)).toBeUndefined();
  });

  it('auto takes onnxruntime when it loads, and tfjs is used when asked', async () => {
    const lines: string[] = [];
    expect(await startBackboneEngine(backbone, 'auto', ENGINE, (m) => lines.push(m))).toBe('onnxruntime');
    expect(lines[0]).toMatch(/^backbone engine: onnxruntime 1\.30\.0 \(cpu, 1 thread\)$/);
    expect(nativeOf(backbone)).toBeDefined();
    await detachNative(backbone);
    expect(await startBackboneEngine(backbone, 'tfjs', ENGINE)).toBe('tfjs');
    expect(nativeOf(backbone)).toBeUndefined();
  });
});

describe('ENGINE_SPIN_WAIT', () => {
  it('is off unless configured, and reaches the engine, which says so', async () => {
    expect(engineOptions(loadConfig({})).spinWait).toBe(false);
    expect(engineOptions(loadConfig({ ENGINE_SPIN_WAIT: 'true' })).spinWait).toBe(true);
    const lines: string[] = [];
    const engine = await initEngine('onnxruntime', { ...ENGINE, spinWait: true }, (m) => lines.push(m));
    expect(engine?.options.spinWait).toBe(true);
    expect(lines[0]).toMatch(/\(cpu, 1 thread, spin-waiting\)$/);
    expect((await initEngine('onnxruntime', ENGINE))?.options.spinWait).toBe(false);
  });
});

describe('native session layout', () => {
  const shape = (width: number, depth: number, patchSize: number, tokens: number) => ({ width, mlpDim: 4 * width, patchSize, tokens, depth }) as BackboneConfig;

  it('cuts ViT-B/16 one block a segment (28 MB each), the embedding with block 0', () => {
    expect(segmentsOf(shape(768, 12, 16, 197), SEGMENT_BYTES)).toEqual([...Array(12).keys()].map((i) => ({ embed: i === 0, from: i, to: i + 1 })));
  });

  it('keeps a small backbone whole and groups mid-size blocks up to the limit', () => {
    expect(segmentsOf(shape(64, 6, 7, 17), SEGMENT_BYTES)).toEqual([{ embed: true, from: 0, to: 6 }]);
    // ViT-S/16: 7.1 MB a block → four a segment.
    expect(segmentsOf(shape(384, 12, 16, 197), SEGMENT_BYTES).map((s) => [s.from, s.to])).toEqual([[0, 4], [4, 8], [8, 12]]);
  });
});

describe('ENGINE_THREADS default: the cores the process may use', () => {
  const files = (map: Record<string, string>) => (file: string) => map[file];
  const cores = availableParallelism();

  it('is the affinity without a CPU quota (cgroup v2 "max", or no cgroup files)', () => {
    expect(processCores(files({ '/sys/fs/cgroup/cpu.max': 'max 100000\n' }))).toBe(cores);
    expect(processCores(files({}))).toBe(cores);
    expect(processCores(files({ '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '-1', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000' }))).toBe(cores);
  });

  it('is capped by a cgroup quota (v2 and v1), whole cores, at least one', () => {
    expect(processCores(files({ '/sys/fs/cgroup/cpu.max': '150000 100000\n' }))).toBe(1);
    expect(processCores(files({ '/sys/fs/cgroup/cpu.max': '50000 100000' }))).toBe(1);
    expect(processCores(files({ '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '100000', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000' }))).toBe(1);
    expect(processCores(files({ '/sys/fs/cgroup/cpu.max': `${(cores + 8) * 100000} 100000` }))).toBe(cores);
  });
});
