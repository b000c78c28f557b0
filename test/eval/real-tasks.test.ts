/**
 * The real-image tasks: digits from python3-sklearn's copy of the UCI digits, letters rendered from
 * installed fonts with the test fonts disjoint from the training fonts. Skipped where the Debian
 * packages are not installed (eval/real-tasks.ts names them).
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DIGITS_FILE, LETTERS, LETTER_FONT_DIRS, drawLetters, loadDigits, loadLetterGlyphs } from '../../eval/real-tasks.js';
import { buildTask } from '../../eval/tasks.js';
import { prng } from '../../src/train/schedule.js';

const fontsThere = [...LETTER_FONT_DIRS.train, ...LETTER_FONT_DIRS.test].every((d) => existsSync(d));

describe.skipIf(!existsSync(DIGITS_FILE))('digits task (python3-sklearn)', () => {
  it('decodes all 1,797 digits into 28×28 with an empty 4-pixel border, and splits them without overlap', async () => {
    const d = await loadDigits();
    expect(d.labels.length).toBe(1797);
    expect(d.side).toBe(28);
    for (let c = 0; c < 10; c++) expect(d.labels.filter((l) => l === c).length).toBeGreaterThan(170);
    for (let i = 0; i < d.labels.length; i += 97) {
      const img = d.pixels.subarray(i * 784, (i + 1) * 784);
      expect(Math.max(...img.subarray(0, 4 * 28))).toBe(0);
      expect(Math.max(...img)).toBeGreaterThan(200);
    }
    const t = buildTask('digits', { train: 1000, test: 2000 }, 3, { digits: d });
    expect(t.train.labels.length).toBe(1000);
    expect(t.test.labels.length).toBe(797);
    for (let c = 0; c < 10; c++) expect(t.train.labels.filter((l) => l === c).length).toBe(100);
    // Every source image is used once: the pixel sums of train + test are those of the whole set.
    const sum = (p: Uint8Array) => p.reduce((a, v) => a + v, 0);
    expect(sum(t.train.pixels) + sum(t.test.pixels)).toBe(sum(d.pixels));
  });
});

describe.skipIf(!fontsThere)('letters task (system fonts)', () => {
  it('renders every letter from disjoint training and test fonts, caches them, and draws balanced deterministic images', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'letters-'));
    try {
      const g = await loadLetterGlyphs(dir);
      const fonts = (gs: typeof g.train) => new Set(gs.map((x) => x.font));
      const [train, test] = [fonts(g.train), fonts(g.test)];
      expect(train.size).toBeGreaterThanOrEqual(4);
      expect(test.size).toBeGreaterThanOrEqual(4);
      expect([...test].filter((f) => train.has(f))).toEqual([]);
      // Split by design family: the Helvetica/Times/Courier lineage (Nimbus, FreeFont, Liberation) is test only.
      expect([...train].filter((f) => /^(Nimbus|Free|Liberation)/.test(f))).toEqual([]);
      expect([...test].every((f) => /^(Nimbus|Free|Liberation)/.test(f))).toBe(true);
      // Both cases of every letter in every font.
      expect(g.train.length).toBe(train.size * 2 * LETTERS.length);
      expect(existsSync(path.join(dir, 'letters-glyphs-v2.json'))).toBe(true);
      const again = await loadLetterGlyphs(dir);
      expect(again.test.length).toBe(g.test.length);

      const a = drawLetters(g.test, 40, prng(2));
      const b = drawLetters(again.test, 40, prng(2));
      expect(Buffer.compare(Buffer.from(a.pixels), Buffer.from(b.pixels))).toBe(0);
      for (let l = 0; l < LETTERS.length; l++) expect(a.labels.filter((x) => x === l).length).toBe(4);
      for (let i = 0; i < 40; i++) expect(Math.max(...a.pixels.subarray(i * 784, (i + 1) * 784))).toBeGreaterThan(150);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
