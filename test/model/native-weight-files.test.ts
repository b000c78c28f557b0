/**
 * The backbone's weights as memory-mapped files (native/weight-files.ts): the same features and
 * training-block gradients as weights held inline, one file per weight written once and
 * reused by a second start, the files actually mapped by the sessions after a forward, and a
 * folder that cannot be written falling back to inline weights with one log line; and which
 * backbones get onnxruntime's arena.
 */
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { detachNative, initBackend, loadBackboneFromDir, nativeOf, settleBackboneWeights, startBackboneEngine, type Backbone } from '../../src/model/index.js';
import { frozenBlocksOf } from '../../src/model/native/attach.js';
import { usesArena } from '../../src/model/native/native-backbone.js';
import { WeightFiles } from '../../src/model/native/weight-files.js';
import { makeTempDir } from '../helpers/db.js';
import { randomPixels, rng, tinyBackbone, writeTinyBackboneDir } from '../helpers/tiny-backbone.js';
import { maxAbsDiff } from './expect.js';

const ENGINE = { threads: 1, provider: 'cpu' } as const;
// Width 96, MLP 384: the MLP and q/k/v weights are files (≥ 64 KiB), norms, biases and wo stay inline.
const SHAPE = { width: 96, depth: 3, heads: 4, mlpDim: 384, imageSize: 16, patchSize: 4, seed: 11 };

function randomRows(n: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => r.uniform() * 2 - 1);
}

async function features(backbone: Backbone, weightsDir: string | undefined, log?: (m: string) => void) {
  await startBackboneEngine(backbone, 'onnxruntime', { ...ENGINE, weightsDir }, log);
  const px = randomPixels(3, backbone.config);
  const pixels = px.dataSync() as Float32Array;
  px.dispose();
  const prefix = await nativeOf(backbone)!.prefix(pixels, 3, backbone.config.depth);
  const rows = backbone.config.tokens * backbone.config.width * 2;
  const x = randomRows(rows, 5);
  const dy = randomRows(rows, 6);
  const blocks = frozenBlocksOf(backbone)!;
  return { prefix, forward: blocks.forward(1, x, 2), vjp: blocks.vjp(2, x, dy, 2) };
}

const mappedFiles = (dir: string) =>
  new Set(
    readFileSync('/proc/self/maps', 'utf8')
      .split('\n')
      .map((l) => l.slice(l.indexOf('/')))
      .filter((f) => f.startsWith(dir)),
  );

describe('engine weight files', () => {
  const root = { dir: '' };
  beforeAll(async () => {
    await initBackend('wasm');
    root.dir = await makeTempDir('dtl-weights');
  });
  afterAll(async () => {
    if (root.dir) rmSync(root.dir, { recursive: true, force: true });
  });

  it('gives the features and training-block results of inline weights, from files written once and mapped', async () => {
    const inline = tinyBackbone(SHAPE);
    const checkpoint = path.join(root.dir, 'checkpoint');
    await writeTinyBackboneDir(checkpoint, SHAPE);
    const mapped = await loadBackboneFromDir(checkpoint, { deferResidency: true });
    const weights = path.join(root.dir, 'weights');
    try {
      const want = await features(inline, undefined);
      const got = await features(mapped, weights);
      expect(maxAbsDiff(got.prefix.x, want.prefix.x)).toBeLessThan(1e-6);
      got.prefix.inputs.forEach((a, i) => expect(maxAbsDiff(a, want.prefix.inputs[i])).toBeLessThan(1e-6));
      expect(maxAbsDiff(got.forward, want.forward)).toBeLessThan(1e-6);
      expect(maxAbsDiff(got.vjp, want.vjp)).toBeLessThan(1e-6);

      const [folder] = readdirSync(weights);
      expect(folder).toMatch(new RegExp(`^[0-9a-f]{32}-s${SHAPE.imageSize}-v\\d+$`));
      const dir = path.join(weights, folder);
      const files = readdirSync(dir).sort();
      // Every weight is a file (norms and biases too), q/k/v as one.
      for (let i = 0; i < SHAPE.depth; i++) for (const w of ['wqkv', 'bqkv', 'wo', 'w1', 'w2', 'ln1g', 'b2']) expect(files).toContain(`b${i}_${w}.bin`);
      // The VJP graph (asked for block 2) maps the forward's files: it adds none of its own.
      expect(files).toHaveLength(3 + SHAPE.depth * 12);
      for (const f of ['patch_w.bin', 'patch_b.bin', 'pos_cls.bin']) expect(files).toContain(f);
      expect(files.some((f) => f.endsWith('.tmp'))).toBe(false);
      expect(statSync(path.join(dir, 'b0_w1.bin')).size).toBe(96 * 384 * 4);
      // The sessions read the weights from the files themselves (mapped), not from copies.
      const maps = mappedFiles(dir);
      for (const f of ['b0_wqkv.bin', 'b2_w2.bin', 'b2_w1.bin']) expect(maps.has(path.join(dir, f)), f).toBe(true);

      // A second start on the same folder reuses the files as they are and reads no checkpoint
      // tensor: this backbone's weights are dropped before the engine starts (any read would throw).
      const before = files.map((f) => statSync(path.join(dir, f)).mtimeMs);
      const again = await loadBackboneFromDir(checkpoint, { deferResidency: true });
      expect(again.identity).toBe(mapped.identity);
      settleBackboneWeights(again, 'native');
      try {
        const third = await features(again, weights);
        expect(maxAbsDiff(third.prefix.x, want.prefix.x)).toBeLessThan(1e-6);
        expect(readdirSync(dir).sort()).toEqual(files);
        expect(files.map((f) => statSync(path.join(dir, f)).mtimeMs)).toEqual(before);
      } finally {
        await detachNative(again);
      }
    } finally {
      await detachNative(inline);
      await detachNative(mapped);
    }
  });

  it('keeps the weights inline, with one log line, where the folder cannot be written', async () => {
    const blocker = path.join(root.dir, 'a-file');
    writeFileSync(blocker, 'not a folder');
    const inline = tinyBackbone(SHAPE);
    const blocked = tinyBackbone(SHAPE);
    const lines: string[] = [];
    try {
      const want = await features(inline, undefined);
      const got = await features(blocked, path.join(blocker, 'sub'), (m) => lines.push(m));
      expect(maxAbsDiff(got.prefix.x, want.prefix.x)).toBeLessThan(1e-6);
      expect(maxAbsDiff(got.vjp, want.vjp)).toBeLessThan(1e-6);
      expect(lines.filter((l) => l.includes('cannot write'))).toHaveLength(1);
    } finally {
      await detachNative(inline);
      await detachNative(blocked);
    }
  });

  it('names one folder per backbone identity and image size', () => {
    const cfg = tinyBackbone(SHAPE).config;
    const a = WeightFiles.forBackbone('/x', 'ab'.repeat(32), cfg);
    const b = WeightFiles.forBackbone('/x', 'cd'.repeat(32), cfg);
    const c = WeightFiles.forBackbone('/x', 'ab'.repeat(32), { ...cfg, imageSize: 32 });
    expect(new Set([a.dir, b.dir, c.dir]).size).toBe(3);
  });
});

describe('engine arena policy', () => {
  it('gives the arena to small backbones only (its activations are kept per session)', () => {
    const cfg = (width: number, depth: number, mlpDim: number, heads: number, tokens: number) => ({ ...tinyBackbone(SHAPE).config, width, depth, mlpDim, heads, tokens });
    expect(usesArena(cfg(64, 6, 256, 4, 17), 1)).toBe(true); // the bundled backbone
    expect(usesArena(cfg(192, 12, 768, 3, 65), 1)).toBe(true); // the benches' width-192 ViT
    expect(usesArena(cfg(768, 12, 3072, 12, 197), 12)).toBe(false); // ViT-B/16 at 224
  });
});
