/** Augmentation views: what each mode trains on, and that a view moves the pixels it says it does. */
import { describe, expect, it } from 'vitest';
import type { BackboneConfig } from '../../src/model/index.js';
import { augmentViews, examplePixelsFn } from '../../src/train/examples.js';
import { countExamples, type PreparedDataset } from '../../src/train/ingest/index.js';

/** One 6×6 RGB image whose grey value at (x, y) is 10·y + x (every pixel distinct). */
function gridDataset(): PreparedDataset {
  const s = 6;
  const pixels = new Uint8Array(s * s * 3);
  for (let y = 0; y < s; y++) for (let x = 0; x < s; x++) pixels.fill(10 * y + x, (y * s + x) * 3, (y * s + x) * 3 + 3);
  const labelIds = Int32Array.from([0]);
  const splits = new Uint8Array(1);
  return { imageSize: s, labels: ['a', 'b'], counts: countExamples(2, labelIds, splits), sources: ['x'], pixels, labelIds, splits };
}

// mean 0, std 1/255: a normalised value is the raw byte, so the test reads positions directly.
const cfg = { imageSize: 6, mean: [0, 0, 0], std: [1 / 255, 1 / 255, 1 / 255] } as unknown as BackboneConfig;
const at = (px: Float32Array, x: number, y: number) => Math.round(px[(y * 6 + x) * 3]);

describe('augmentation views', () => {
  it('none, flip and shift: the identity first, then the moved views', () => {
    expect(augmentViews('none', 28)).toEqual([{ flip: false, dx: 0, dy: 0 }]);
    expect(augmentViews('flip', 28)).toEqual([{ flip: false, dx: 0, dy: 0 }, { flip: true, dx: 0, dy: 0 }]);
    const shift = augmentViews('shift', 28);
    expect(shift[0]).toEqual({ flip: false, dx: 0, dy: 0 });
    expect(shift.slice(1).map((v) => [v.dx, v.dy])).toEqual([[2, 0], [-2, 0], [0, 2], [0, -2]]);
    // ~7 % of the side, at least one pixel.
    expect(augmentViews('shift', 224)[1].dx).toBe(16);
    expect(augmentViews('shift', 8)[1].dx).toBe(1);
  });

  it('a shift moves the content and repeats the edge into the uncovered border; flip mirrors', () => {
    const px = examplePixelsFn(gridDataset(), cfg);
    const same = px(0);
    expect(at(same, 3, 2)).toBe(23);
    const right = px(0, { flip: false, dx: 2, dy: 0 });
    expect(at(right, 3, 2)).toBe(21); // what was 2 px to the left
    expect(at(right, 0, 2)).toBe(20); // border: the left edge repeated
    expect(at(right, 1, 2)).toBe(20);
    const up = px(0, { flip: false, dx: 0, dy: -1 });
    expect(at(up, 3, 2)).toBe(33);
    expect(at(up, 3, 5)).toBe(53); // bottom edge repeated
    const mirrored = px(0, { flip: true, dx: 0, dy: 0 });
    expect(at(mirrored, 0, 1)).toBe(15);
  });
});
