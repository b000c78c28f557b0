/** Hyperparameter schema (defaults = the paper's recipe, bounds), block resolution, LR schedule, split, PRNG. */
import { describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors.js';
import type { BackboneConfig } from '../../src/model/index.js';
import { adapterSpecFor, autoRank, defaultAddBlocks, defaultTapeBlocks, parseHyperparameters, resolveBlocks } from '../../src/train/hyperparameters.js';
import { learningRate, prng, shuffle, stopsEarly, stratifiedSplit, subSeed } from '../../src/train/schedule.js';

const vitB = { depth: 12, width: 768, gridSize: 14 } as BackboneConfig;
const tiny = { depth: 4, width: 32, gridSize: 4 } as BackboneConfig;

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    return (err as AppError).code + ': ' + (err as AppError).message;
  }
  throw new Error('expected a throw');
}

describe('hyperparameters', () => {
  it('defaults to the authors recipe, with lr and variant chosen by the search', () => {
    const h = parseHyperparameters({});
    expect(h).toMatchObject({ lr: 'auto', weightDecay: 0.05, batchSize: 32, rank: 'auto', beta: 100, readBlocks: 'all', addBlocks: 'default', variant: 'auto', budget: 'balanced', kernel: 3, augment: 'none' });
    expect(parseHyperparameters({ lr: 1e-3, variant: 'dtl' })).toMatchObject({ lr: 1e-3, variant: 'dtl' });
    expect(h.warmupEpochs).toBeGreaterThan(0);
    expect(adapterSpecFor(h, vitB, ['a', 'b'])).toEqual({
      rank: 2,
      beta: 100,
      labels: ['a', 'b'],
      loraBeforeBlocks: [...Array(12).keys()],
      addAfterBlocks: [6, 7, 8, 9, 10, 11],
      fusionKernel: 0,
    });
    expect(resolveBlocks(parseHyperparameters({ variant: 'dtl+' }), vitB).fusionKernel).toBe(3);
    // rank 'auto': the authors' 2 at ViT-B's width, about the same CSN size per block when narrower, 2…d/4.
    expect([768, 1024, 384, 192, 64, 32, 16].map(autoRank)).toEqual([2, 2, 4, 8, 16, 8, 4]);
    expect(parseHyperparameters({ rank: 4 }).rank).toBe(4);
    // Activation checkpointing: unset → a quarter of the blocks stay on the tape.
    expect(h.tapeBlocks).toBeUndefined();
    expect(defaultTapeBlocks(12)).toBe(3);
    expect(defaultTapeBlocks(6)).toBe(1);
    expect(parseHyperparameters({ tapeBlocks: 0 }).tapeBlocks).toBe(0);
    expect(codeOf(() => parseHyperparameters({ tapeBlocks: -1 }))).toContain('tapeBlocks');
  });

  it('the default additions are the second half of the blocks', () => {
    expect(defaultAddBlocks(12)).toEqual([6, 7, 8, 9, 10, 11]);
    expect(defaultAddBlocks(4)).toEqual([2, 3]);
    expect(defaultAddBlocks(3)).toEqual([1, 2]);
    expect(defaultAddBlocks(1)).toEqual([0]);
  });

  it('refuses out-of-bounds values and unknown keys with validation_failed naming the field', () => {
    for (const [input, field] of [
      [{ lr: 0 }, 'lr'],
      [{ lr: 2 }, 'lr'],
      [{ epochs: 0 }, 'epochs'],
      [{ epochs: 1.5 }, 'epochs'],
      [{ batchSize: 100_000 }, 'batchSize'],
      [{ rank: 0 }, 'rank'],
      [{ variant: 'lora' }, 'variant'],
      [{ lr: 'fast' }, 'lr'],
      [{ lr: 'AUTO' }, 'lr'],
      [{ budget: 'huge' }, 'budget'],
      [{ budget: 3 }, 'budget'],
      [{ readBlocks: [1, 1] }, 'readBlocks'],
      [{ readBlocks: [] }, 'readBlocks'],
      [{ valFraction: 0.9 }, 'valFraction'],
      [{ augment: 'crop' }, 'augment'],
      [{ minLr: 0.1, lr: 0.01 }, 'minLr'],
      // lr 'auto' searches only rates ≥ minLr: above every rate of the grid, nothing is left.
      [{ minLr: 0.5 }, 'minLr'],
      [{ learningRate: 0.1 }, 'learningRate'],
    ] as const) {
      const msg = codeOf(() => parseHyperparameters(input));
      expect(msg).toMatch(/^validation_failed: invalid hyperparameters: /);
      expect(msg).toContain(field);
    }
  });

  it('checks block lists, rank and kernel against the backbone', () => {
    expect(codeOf(() => resolveBlocks(parseHyperparameters({ addBlocks: [4] }), tiny))).toBe(
      'validation_failed: invalid hyperparameters: addBlocks names block 4, but the backbone has 4 blocks (0..3)',
    );
    expect(codeOf(() => resolveBlocks(parseHyperparameters({ readBlocks: [3], addBlocks: [1] }), tiny))).toContain('after the last addition');
    expect(codeOf(() => resolveBlocks(parseHyperparameters({ rank: 33 }), tiny))).toContain('rank 33 exceeds the backbone width 32');
    expect(codeOf(() => resolveBlocks(parseHyperparameters({ variant: 'dtl+', kernel: 5 }), tiny))).toContain('kernel 5 exceeds the 4×4 patch grid');
    // Lists are sorted; plain DTL ignores the kernel.
    expect(resolveBlocks(parseHyperparameters({ readBlocks: [2, 0], addBlocks: [3, 1], kernel: 9 }), tiny)).toEqual({
      loraBeforeBlocks: [0, 2],
      addAfterBlocks: [1, 3],
      fusionKernel: 0,
    });
  });
});

describe('schedule', () => {
  const h = { lr: 1e-3, minLr: 1e-8, warmupEpochs: 3, epochs: 10 };
  it('warms up linearly, peaks at lr, then follows a cosine down to minLr', () => {
    expect(learningRate(0, h)).toBeCloseTo(0.25e-3, 12);
    expect(learningRate(2, h)).toBeCloseTo(0.75e-3, 12);
    expect(learningRate(3, h)).toBeCloseTo(1e-3, 12);
    expect(learningRate(8, h)).toBeCloseTo(1e-8 + 0.5 * (1e-3 - 1e-8), 12);
    expect(learningRate(13, h)).toBeCloseTo(1e-8, 12);
    for (let e = 3; e < 12; e++) expect(learningRate(e + 1, h)).toBeLessThan(learningRate(e, h));
    expect(learningRate(0, { ...h, warmupEpochs: 0 })).toBe(1e-3);
  });

  it('early stopping: patience from the best epoch, or from the search\'s choice when later; never in the warm-up or at the end', () => {
    const at = { bestEpoch: 3, chosenAt: 0, patience: 5, warmupEpochs: 2, total: 22 };
    expect(stopsEarly({ ...at, epoch: 7 })).toBe(false);
    expect(stopsEarly({ ...at, epoch: 8 })).toBe(true);
    // A winner chosen at epoch 8 (best at 3) trains on to at least 13.
    expect(stopsEarly({ ...at, chosenAt: 8, epoch: 8 })).toBe(false);
    expect(stopsEarly({ ...at, chosenAt: 8, epoch: 12 })).toBe(false);
    expect(stopsEarly({ ...at, chosenAt: 8, epoch: 13 })).toBe(true);
    expect(stopsEarly({ ...at, bestEpoch: 1, patience: 1, epoch: 2 })).toBe(false); // still warming up
    expect(stopsEarly({ ...at, epoch: 22 })).toBe(false); // the last epoch: nothing to save
    expect(stopsEarly({ ...at, patience: 0, epoch: 20 })).toBe(false);
  });

  it('prng and shuffle are seeded and reproducible', () => {
    const a = shuffle([...Array(20).keys()], prng(5));
    expect(shuffle([...Array(20).keys()], prng(5))).toEqual(a);
    expect(shuffle([...Array(20).keys()], prng(6))).not.toEqual(a);
    expect([...a].sort((x, y) => x - y)).toEqual([...Array(20).keys()]);
    expect(subSeed(1, 2)).not.toBe(subSeed(1, 3));
    expect(subSeed(1, 2)).not.toBe(subSeed(2, 2));
  });

  it('stratified split holds out the fraction of every class, at least one, never the last', () => {
    // class c has 10, 5, 2, 1 images
    const labels = [...Array(10).fill(0), ...Array(5).fill(1), 2, 2, 3];
    const idx = labels.map((_, i) => i);
    const { train, val } = stratifiedSplit(idx, (i) => labels[i], 0.2, 9);
    const count = (list: number[], c: number) => list.filter((i) => labels[i] === c).length;
    expect([0, 1, 2, 3].map((c) => count(val, c))).toEqual([2, 1, 1, 0]);
    expect([0, 1, 2, 3].map((c) => count(train, c))).toEqual([8, 4, 1, 1]);
    expect([...train, ...val].sort((a, b) => a - b)).toEqual(idx);
    expect(stratifiedSplit(idx, (i) => labels[i], 0.2, 9)).toEqual({ train, val });
    expect(stratifiedSplit(idx, (i) => labels[i], 0.2, 10).val).not.toEqual(val);
  });
});
