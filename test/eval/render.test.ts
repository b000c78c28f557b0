import { describe, expect, it } from 'vitest';
import { prng } from '../../scripts/pretrain/train.js';
import { COUNT_LABELS, SHAPES, SIDE, renderCounts, renderShapes, rotate90 } from '../../eval/render.js';
import { stratifiedSplit } from '../../src/train/schedule.js';
import { buildTask } from '../../eval/tasks.js';

describe('synthetic tasks', () => {
  it('renders balanced, deterministic shape images with visible foreground', () => {
    const a = renderShapes(60, prng(1));
    const b = renderShapes(60, prng(1));
    expect(Buffer.compare(Buffer.from(a.pixels), Buffer.from(b.pixels))).toBe(0);
    expect(a.pixels.length).toBe(60 * SIDE * SIDE);
    const counts = SHAPES.map((_, c) => a.labels.filter((l) => l === c).length);
    expect(counts).toEqual(SHAPES.map(() => 10));
    // Every image has a bright object on a darker background.
    for (let i = 0; i < 60; i++) {
      const img = a.pixels.subarray(i * SIDE * SIDE, (i + 1) * SIDE * SIDE);
      expect(Math.max(...img)).toBeGreaterThan(140);
      expect(Math.min(...img)).toBeLessThan(90);
    }
    expect(Buffer.compare(Buffer.from(renderShapes(60, prng(2)).pixels), Buffer.from(a.pixels))).not.toBe(0);
  });

  it('draws more bright area for more blobs on average', () => {
    const set = renderCounts(400, prng(3));
    const bright = COUNT_LABELS.map(() => 0);
    set.labels.forEach((l, i) => {
      const img = set.pixels.subarray(i * SIDE * SIDE, (i + 1) * SIDE * SIDE);
      bright[l] += img.filter((v) => v > 120).length / 100;
    });
    for (let k = 1; k < bright.length; k++) expect(bright[k]).toBeGreaterThan(bright[k - 1]);
  });

  it('rotate90 turns counter-clockwise and four turns are the identity', () => {
    const side = 3;
    const src = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const out = new Uint8Array(9);
    rotate90(src, 0, side, 1, out, 0);
    // Top-right (3) moves to the top-left.
    expect(Array.from(out)).toEqual([3, 6, 9, 2, 5, 8, 1, 4, 7]);
    let cur = src;
    for (let k = 0; k < 4; k++) {
      const next = new Uint8Array(9);
      rotate90(cur, 0, side, 1, next, 0);
      cur = next;
    }
    expect(Array.from(cur)).toEqual(Array.from(src));
  });

  it('builds synthetic tasks of the requested sizes and splits them stratified', () => {
    const t = buildTask('count', { train: 40, test: 20 }, 5);
    expect(t.train.labels.length).toBe(40);
    expect(t.test.labels.length).toBe(20);
    expect(t.labels).toEqual(['1', '2', '3', '4']);
    const { train, val } = stratifiedSplit(Array.from({ length: 40 }, (_, i) => i), (i) => t.train.labels[i], 0.2, 1);
    expect(train.length + val.length).toBe(40);
    expect(new Set([...train, ...val]).size).toBe(40);
    for (let c = 0; c < 4; c++) expect(val.filter((i) => t.train.labels[i] === c).length).toBe(2);
  });

  it('asks for Fashion-MNIST for the tasks built on it', () => {
    expect(() => buildTask('rotation', { train: 8, test: 8 }, 1)).toThrow(/needs Fashion-MNIST/);
  });
});
