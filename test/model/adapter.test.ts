import { readFileSync } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  adapterSpecSchema,
  createAdapter,
  initBackend,
  loadBackboneFromDir,
  loadAdapter,
  readSafetensors,
  saveAdapter,
  writeSafetensors,
  type Adapter,
  type TensorToWrite,
} from '../../src/model/index.js';
import { randomAdapter, tinyBackbone, tinySpec } from '../helpers/tiny-backbone.js';
import { expectAppError } from './expect.js';

const FIXTURES = path.resolve(import.meta.dirname, '../fixtures');

/** All weights of an adapter as plain arrays, keyed by a stable name. */
function weights(a: Adapter): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const [i, p] of a.reads) {
    out[`a${i}`] = Array.from(p.a.dataSync());
    out[`b${i}`] = Array.from(p.b.dataSync());
  }
  if (a.fusion) out.fusion = Array.from(a.fusion.dataSync());
  out.headW = Array.from(a.headW.dataSync());
  out.headB = Array.from(a.headB.dataSync());
  return out;
}

/** Rebuilds an adapter file with edited tensors / metadata. */
function edit(bytes: Uint8Array, f: (ts: TensorToWrite[], meta: Record<string, unknown>) => TensorToWrite[]): Buffer {
  const file = readSafetensors(bytes);
  const meta = JSON.parse(file.metadata.dtl) as Record<string, unknown>;
  const ts = [...file.tensors].map(([name, t]) => ({ name, shape: t.shape, data: Float32Array.from(t.data) }));
  const out = f(ts, meta);
  return writeSafetensors(out, { dtl: JSON.stringify(meta) });
}

describe('adapters', () => {
  beforeAll(() => initBackend('wasm'));
  const backbone = () => tinyBackbone({ width: 8, depth: 3 });

  it('validates the spec', () => {
    expect(adapterSpecSchema.safeParse(tinySpec()).success).toBe(true);
    for (const bad of [
      { rank: 0 },
      { beta: 0 },
      { loraBeforeBlocks: [0, 0] },
      { addAfterBlocks: [-1] },
      { fusionKernel: -1 },
      { fusionKernel: 1.5 },
      { labels: ['only'] },
      { labels: ['a', 'a'] },
    ]) {
      expect(adapterSpecSchema.safeParse(tinySpec(bad)).success, JSON.stringify(bad)).toBe(false);
    }
  });

  it("initialises as the paper does: A uniform ±1/√d, B = 0, taps ±1/k, head N(0, .02) truncated, bias 0", () => {
    const b = tinyBackbone({ width: 32, depth: 3, heads: 4, mlpDim: 32 });
    const a = createAdapter(b.config, tinySpec({ rank: 4, fusionKernel: 3, labels: ['x', 'y', 'z', 'w', 'v', 'u', 't', 's'] }), { seed: 11 });
    try {
      const w = weights(a);
      const A = [...w.a0, ...w.a1, ...w.a2];
      expect(Math.max(...A.map(Math.abs))).toBeLessThanOrEqual(1 / Math.sqrt(32));
      expect(Math.max(...A.map(Math.abs))).toBeGreaterThan(0.8 / Math.sqrt(32));
      expect([...w.b0, ...w.b1, ...w.b2].every((v) => v === 0)).toBe(true);
      expect(Math.max(...w.fusion.map(Math.abs))).toBeLessThanOrEqual(1 / 3);
      expect(Math.max(...w.headW.map(Math.abs))).toBeLessThanOrEqual(0.04 + 1e-7);
      const std = Math.sqrt(w.headW.reduce((s, v) => s + v * v, 0) / w.headW.length);
      expect(std).toBeGreaterThan(0.012);
      expect(std).toBeLessThan(0.022);
      expect(w.headB.every((v) => v === 0)).toBe(true);
      expect(a.byteSize).toBe(4 * (3 * 2 * 4 * 32 + 9 * 32 + 8 * 32 + 8));
      expect(a.trainableVariables()).toHaveLength(3 * 2 + 1 + 2);
      expect(a.isBias(a.headB)).toBe(true);
      expect(a.isBias(a.headW)).toBe(false);
      // Same seed, same weights.
      const again = createAdapter(b.config, a.spec, { seed: 11 });
      expect(weights(again)).toEqual(w);
      again.dispose();
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  it('saves with the official names, shapes and dtl metadata, and loads back bit-exact', () => {
    const b = backbone();
    const spec = tinySpec({ loraBeforeBlocks: [0, 2], addAfterBlocks: [2], fusionKernel: 3 });
    const a = randomAdapter(b.config, spec, 5);
    try {
      const bytes = saveAdapter(a, { backbone: b.identity, note: 'x', rank: 99 });
      const file = readSafetensors(bytes);
      expect([...file.tensors.keys()]).toEqual([
        'lora_dict.0.lora_A', 'lora_dict.0.lora_B', 'lora_dict.2.lora_A', 'lora_dict.2.lora_B', 'lora_fusion.weight', 'head.weight', 'head.bias',
      ]);
      expect(file.tensors.get('lora_dict.0.lora_A')!.shape).toEqual([2, 8]);
      expect(file.tensors.get('lora_dict.0.lora_B')!.shape).toEqual([8, 2]);
      expect(file.tensors.get('lora_fusion.weight')!.shape).toEqual([8, 1, 3, 3]);
      expect(file.tensors.get('head.weight')!.shape).toEqual([3, 8]);
      // PyTorch layout: lora_A[k][j] is our Aᵀ[j][k].
      expect(file.tensors.get('lora_dict.2.lora_A')!.data[1 * 8 + 5]).toBe(a.reads.get(2)!.a.arraySync()[5][1]);
      expect(file.tensors.get('lora_fusion.weight')!.data[4 * 9 + 2 * 3 + 1]).toBe(a.fusion!.arraySync()[2 * 3 + 1][4]);
      const meta = JSON.parse(file.metadata.dtl);
      expect(meta).toMatchObject({ ...spec, backbone: b.identity, note: 'x', backboneWidth: 8, backboneDepth: 3 });

      const { adapter, meta: loadedMeta } = loadAdapter(bytes, b.config);
      expect(adapter.trainable).toBe(false);
      expect(adapter.trainableVariables()).toEqual([]);
      expect(adapter.spec).toEqual(spec);
      expect(loadedMeta.backbone).toBe(b.identity);
      expect(weights(adapter)).toEqual(weights(a));
      expect(adapter.byteSize).toBe(a.byteSize);
      adapter.dispose();
      const trainable = loadAdapter(bytes, b.config, { trainable: true }).adapter;
      expect(trainable.trainableVariables()).toHaveLength(2 * 2 + 1 + 2);
      trainable.dispose();
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  it('loads both fixture adapters', async () => {
    for (const name of ['dtl-golden-hf', 'dtl-golden-timm-plus']) {
      const b = await loadBackboneFromDir(path.join(FIXTURES, name));
      const { adapter, meta } = loadAdapter(readFileSync(path.join(FIXTURES, name, 'adapter.safetensors')), b.config);
      expect(adapter.spec.labels).toEqual(['cat', 'dog', 'fox']);
      expect(meta.rank).toBe(2);
      expect(adapter.reads.size).toBe(4);
      expect(adapter.fusion === null).toBe(name === 'dtl-golden-hf');
      adapter.dispose();
      b.dispose();
    }
  });

  it('temperature: files without it load with T = 1; a calibrated one round-trips in the metadata; a bad one is refused', async () => {
    for (const name of ['dtl-golden-hf', 'dtl-golden-timm-plus']) {
      const b = await loadBackboneFromDir(path.join(FIXTURES, name));
      const bytes = readFileSync(path.join(FIXTURES, name, 'adapter.safetensors'));
      const { adapter, meta } = loadAdapter(bytes, b.config);
      expect(adapter.temperature).toBe(1);
      expect(meta.temperature).toBeUndefined();
      // Saved at T = 1 the metadata names no temperature (uncalibrated files stay as they were).
      expect(JSON.parse(readSafetensors(saveAdapter(adapter)).metadata.dtl)).not.toHaveProperty('temperature');
      adapter.temperature = 2.5;
      const hot = loadAdapter(saveAdapter(adapter, { temperature: 9 }), b.config);
      expect(hot.adapter.temperature).toBe(2.5);
      expect(hot.meta.temperature).toBe(2.5);
      expect(weights(hot.adapter)).toEqual(weights(adapter));
      hot.adapter.dispose();
      adapter.dispose();
      for (const bad of [0, -1, 'warm', null]) {
        await expectAppError(
          () => loadAdapter(edit(bytes, (ts, m) => ((m.temperature = bad), ts)), b.config),
          'invalid_adapter',
          /'temperature' in the 'dtl' metadata must be a positive number/,
        );
      }
      b.dispose();
    }
  });

  it('frees its tensors on dispose (idempotent)', () => {
    const b = backbone();
    const before = tf.memory().numTensors;
    const a = createAdapter(b.config, tinySpec({ fusionKernel: 3 }), { seed: 1 });
    const loaded = loadAdapter(saveAdapter(a), b.config).adapter;
    a.dispose();
    a.dispose();
    loaded.dispose();
    expect(a.disposed).toBe(true);
    expect(tf.memory().numTensors).toBe(before);
    b.dispose();
  });

  describe('refuses bad adapter files with one clear error', () => {
    it('adapter for another width or block count → adapter_backbone_mismatch', async () => {
      const wide = tinyBackbone({ width: 16, heads: 2, depth: 3 });
      const deep = tinyBackbone({ width: 8, depth: 5 });
      const b = backbone();
      try {
        const save = (a: Adapter) => {
          const bytes = saveAdapter(a);
          a.dispose();
          return bytes;
        };
        const fromWide = save(createAdapter(wide.config, tinySpec(), { seed: 1 }));
        await expectAppError(() => loadAdapter(fromWide, b.config), 'adapter_backbone_mismatch', /width 16.*width is 8/);
        const readsDeep = save(createAdapter(deep.config, tinySpec({ loraBeforeBlocks: [0, 4], addAfterBlocks: [4] }), { seed: 1 }));
        await expectAppError(() => loadAdapter(readsDeep, b.config), 'adapter_backbone_mismatch', /block 4 but the backbone has 3 blocks/);
        // Indices that fit, but the file says it was made for 5 blocks.
        const fitsDeep = save(createAdapter(deep.config, tinySpec(), { seed: 1 }));
        await expectAppError(() => loadAdapter(fitsDeep, b.config), 'adapter_backbone_mismatch', /5 blocks.*has 3/);
        // The authors' files carry no backboneWidth: the head's shape tells.
        const noMeta = edit(fromWide, (ts, meta) => {
          delete meta.backboneWidth;
          delete meta.backboneDepth;
          return ts;
        });
        await expectAppError(() => loadAdapter(noMeta, b.config), 'adapter_backbone_mismatch', /width 16/);
      } finally {
        wide.dispose();
        deep.dispose();
        b.dispose();
      }
    });

    it('malformed files → invalid_adapter naming the problem', async () => {
      const b = backbone();
      const a = createAdapter(b.config, tinySpec({ fusionKernel: 3 }), { seed: 2 });
      const good = saveAdapter(a);
      a.dispose();
      try {
        await expectAppError(() => loadAdapter(good.subarray(0, 50), b.config), 'invalid_adapter', /^adapter: /);
        await expectAppError(
          () => loadAdapter(edit(good, (ts) => ts.filter((t) => t.name !== 'lora_dict.1.lora_B')), b.config),
          'invalid_adapter',
          /missing tensor 'lora_dict\.1\.lora_B'/,
        );
        await expectAppError(
          () => loadAdapter(edit(good, (ts) => ts.map((t) => (t.name === 'lora_fusion.weight' ? { ...t, shape: [8, 1, 9], data: t.data } : t))), b.config),
          'invalid_adapter',
          /tensor 'lora_fusion\.weight' has shape \[8, 1, 9\], expected \[8, 1, 3, 3\]/,
        );
        await expectAppError(
          () => loadAdapter(edit(good, (ts) => [...ts, { name: 'lora_dict.9.lora_A', shape: [1], data: new Float32Array(1) }]), b.config),
          'invalid_adapter',
          /unexpected tensor 'lora_dict\.9\.lora_A'/,
        );
        await expectAppError(
          () => loadAdapter(edit(good, (ts, meta) => ((meta.labels = ['one']), ts)), b.config),
          'invalid_adapter',
          /invalid 'dtl' metadata: labels/,
        );
        await expectAppError(
          () => loadAdapter(edit(good, (ts) => ts.map((t) => (t.name === 'head.bias' ? { ...t, data: Float32Array.from([0, NaN, 0]) } : t))), b.config),
          'invalid_adapter',
          /'head\.bias' has non-finite values/,
        );
        const noMeta = writeSafetensors([{ name: 'head.bias', shape: [1], data: new Float32Array(1) }]);
        await expectAppError(() => loadAdapter(noMeta, b.config), 'invalid_adapter', /no 'dtl' entry/);
        const notJson = writeSafetensors([], { dtl: '{' });
        await expectAppError(() => loadAdapter(notJson, b.config), 'invalid_adapter', /not valid JSON/);
      } finally {
        b.dispose();
      }
    });
  });
});
