/**
 * The real-image tasks, from data installed with Debian packages (read at script time; nothing is
 * a runtime dependency of the service):
 *
 *   digits    handwritten digits 0–9: the 1,797 8×8 images (43 writers, UCI "Optical Recognition
 *             of Handwritten Digits", E. Alpaydin & C. Kaynak) that scikit-learn ships as
 *             sklearn/datasets/data/digits.csv.gz — `apt-get install python3-sklearn` (BSD-3-Clause
 *             package; the data set is CC BY 4.0). Upscaled to 20×20 and centred in 28×28, white
 *             on black like MNIST.
 *   letters   the letters A–J (upper or lower case, one class per letter) rendered from the system's
 *             fonts with random size, rotation and position. Training fonts: DejaVu (Vera lineage)
 *             and URW's Bookman, Gothic (Avant Garde), C059 (Century Schoolbook) and P052
 *             (Palatino); test fonts, never used for training and of other designs: the
 *             Helvetica / Times / Courier families — URW's Nimbus, GNU FreeFont (derived from
 *             Nimbus) and Liberation (metric clones of the same three). Splitting by design family,
 *             not by file, keeps a near-copy of a test font out of training —
 *             `apt-get install fonts-dejavu-core fonts-dejavu-extra fonts-liberation fonts-freefont-ttf fonts-urw-base35`
 *             (Bitstream Vera / OFL-1.1 / GPL-3+ with font exception / AGPL-3 with font exception).
 *             Glyphs are rendered with sharp (text input, one font file at a time) and fontconfig's
 *             fc-query names each file's family and style.
 *
 * The bundled backbone was pretrained on six Fashion-MNIST clothing classes only: it has seen
 * neither digits nor letters. The decoded digits and the rendered glyphs are cached under
 * `.data/eval-tasks/` (git-ignored); no image is committed.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import sharp from 'sharp';
import { AppError } from '../src/errors.js';
import type { LabelledSet } from '../scripts/pretrain/train.js';

export const DIGITS_FILE = '/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz';
export const CACHE_DIR = '.data/eval-tasks';
export const LETTERS = ['A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J'] as const;
const SIDE = 28;

/** Font folders per split: training fonts and the disjoint test fonts. */
const URW = '/usr/share/fonts/opentype/urw-base35';
export const LETTER_FONT_DIRS = {
  train: ['/usr/share/fonts/truetype/dejavu', URW],
  test: ['/usr/share/fonts/truetype/liberation', '/usr/share/fonts/truetype/freefont', URW],
} as const;
/** Which URW base35 files belong to which split (the folder holds both designs). */
const URW_TEST = /^Nimbus/;
const inSplit = (split: keyof typeof LETTER_FONT_DIRS, file: string) =>
  path.dirname(file) !== URW || (split === 'test') === URW_TEST.test(path.basename(file));
/** Files with no Latin letters (symbols, dingbats, maths) or a script face unlike any training font. */
const SKIP_FONTS = /StandardSymbols|D050000L|Z003|MathTeXGyre/;

/** A set of labelled grey images, 28×28, label = class index. */
export type RealImages = LabelledSet;

/** Bilinear sample of a w×h grey image at (x, y) in pixel-centre coordinates; 0 outside. */
function sample(src: Uint8Array, w: number, h: number, x: number, y: number): number {
  const x0 = Math.floor(x);
  const y0 = Math.floor(y);
  const fx = x - x0;
  const fy = y - y0;
  const at = (xx: number, yy: number) => (xx < 0 || yy < 0 || xx >= w || yy >= h ? 0 : src[yy * w + xx]);
  return (at(x0, y0) * (1 - fx) + at(x0 + 1, y0) * fx) * (1 - fy) + (at(x0, y0 + 1) * (1 - fx) + at(x0 + 1, y0 + 1) * fx) * fy;
}

/** All 1,797 digits, 28×28 (8×8 upscaled to 20×20 and centred, values 0..16 → 0..255). */
export async function loadDigits(file = DIGITS_FILE): Promise<RealImages> {
  if (!existsSync(file)) {
    throw new AppError('invalid_dataset', `handwritten digits not found at ${file}. Install them with:\n  sudo apt-get install python3-sklearn`);
  }
  const rows = gunzipSync(await readFile(file)).toString('utf8').trim().split('\n');
  const pixels = new Uint8Array(rows.length * SIDE * SIDE);
  const labels = new Int32Array(rows.length);
  const small = new Uint8Array(64);
  rows.forEach((line, n) => {
    const v = line.split(',').map(Number);
    if (v.length !== 65 || v.some((x) => !Number.isInteger(x) || x < 0 || x > 16)) throw new AppError('invalid_dataset', `${file}: bad row ${n + 1}`);
    for (let k = 0; k < 64; k++) small[k] = Math.round((v[k] * 255) / 16);
    labels[n] = v[64];
    // 20×20 box at (4, 4): output pixel centre → source coordinate (pixel centres aligned).
    for (let y = 0; y < 20; y++) {
      for (let x = 0; x < 20; x++) {
        const val = sample(small, 8, 8, ((x + 0.5) * 8) / 20 - 0.5, ((y + 0.5) * 8) / 20 - 0.5);
        pixels[n * SIDE * SIDE + (y + 4) * SIDE + x + 4] = Math.round(val);
      }
    }
  });
  return { side: SIDE, pixels, labels };
}

/** One rendered glyph, tightly cropped (ink > 0), white on black. */
export interface Glyph {
  font: string;
  letter: number;
  w: number;
  h: number;
  data: Uint8Array;
}

async function fontFiles(split: keyof typeof LETTER_FONT_DIRS): Promise<string[]> {
  const out: string[] = [];
  for (const d of LETTER_FONT_DIRS[split]) {
    if (!existsSync(d)) continue;
    for (const f of (await readdir(d)).sort()) {
      const file = path.join(d, f);
      if (/\.(ttf|otf)$/i.test(f) && !SKIP_FONTS.test(f) && inSplit(split, file)) out.push(file);
    }
  }
  return out;
}

async function renderGlyph(file: string, desc: string, ch: string): Promise<{ w: number; h: number; data: Uint8Array }> {
  const { data, info } = await sharp({ text: { text: ch, fontfile: file, font: desc, dpi: 160 } }).greyscale().raw().toBuffer({ resolveWithObject: true });
  let [x0, y0, x1, y1] = [info.width, info.height, -1, -1];
  for (let y = 0; y < info.height; y++) {
    for (let x = 0; x < info.width; x++) {
      if (data[y * info.width + x] > 0) [x0, y0, x1, y1] = [Math.min(x0, x), Math.min(y0, y), Math.max(x1, x), Math.max(y1, y)];
    }
  }
  if (x1 < 0) return { w: 0, h: 0, data: new Uint8Array(0) };
  const w = x1 - x0 + 1;
  const h = y1 - y0 + 1;
  const crop = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) crop.set(data.subarray((y0 + y) * info.width + x0, (y0 + y) * info.width + x0 + w), y * w);
  return { w, h, data: crop };
}

/**
 * Every glyph (A–J and a–j) of every font of a split. A font whose glyphs come out identical to
 * an earlier font's (fontconfig fell back to another face) is dropped, so no face is counted
 * twice or leaks between the splits.
 */
export async function renderGlyphs(split: keyof typeof LETTER_FONT_DIRS, seen = new Set<string>()): Promise<Glyph[]> {
  const out: Glyph[] = [];
  for (const file of await fontFiles(split)) {
    const [family, style] = execFileSync('fc-query', ['-f', '%{family[0]}|%{style[0]}\n', file], { encoding: 'utf8' }).split('\n')[0].split('|');
    const desc = `${family} ${style}`;
    const glyphs: Glyph[] = [];
    for (let l = 0; l < LETTERS.length; l++) {
      for (const ch of [LETTERS[l], LETTERS[l].toLowerCase()]) {
        const g = await renderGlyph(file, desc, ch);
        if (g.w > 0) glyphs.push({ font: path.basename(file), letter: l, ...g });
      }
    }
    const print = glyphs.map((g) => `${g.w}x${g.h}:${Buffer.from(g.data).toString('base64')}`).join('|');
    if (glyphs.length < 2 * LETTERS.length || seen.has(print)) continue;
    seen.add(print);
    out.push(...glyphs);
  }
  return out;
}

interface CachedGlyphs {
  version: 1;
  train: { font: string; letter: number; w: number; h: number; data: string }[];
  test: { font: string; letter: number; w: number; h: number; data: string }[];
}

export interface LetterGlyphs {
  train: Glyph[];
  test: Glyph[];
}

/** The glyph atlas of both splits, rendered once and cached under `cacheDir`. */
export async function loadLetterGlyphs(cacheDir = CACHE_DIR): Promise<LetterGlyphs> {
  const file = path.join(cacheDir, 'letters-glyphs-v2.json');
  const decode = (gs: CachedGlyphs['train']) => gs.map((g) => ({ ...g, data: new Uint8Array(Buffer.from(g.data, 'base64')) }));
  if (existsSync(file)) {
    const c = JSON.parse(await readFile(file, 'utf8')) as CachedGlyphs;
    return { train: decode(c.train), test: decode(c.test) };
  }
  const seen = new Set<string>();
  const train = await renderGlyphs('train', seen);
  const test = await renderGlyphs('test', seen);
  const fonts = (gs: Glyph[]) => new Set(gs.map((g) => g.font)).size;
  if (fonts(train) < 4 || fonts(test) < 4) {
    throw new AppError(
      'invalid_dataset',
      `letters need at least 4 training and 4 test fonts, found ${fonts(train)} and ${fonts(test)}. Install them with:\n` +
        '  sudo apt-get install fonts-dejavu-core fonts-dejavu-extra fonts-liberation fonts-freefont-ttf fonts-urw-base35',
    );
  }
  const encode = (gs: Glyph[]) => gs.map((g) => ({ ...g, data: Buffer.from(g.data).toString('base64') }));
  await mkdir(cacheDir, { recursive: true });
  await writeFile(file, JSON.stringify({ version: 1, train: encode(train), test: encode(test) } satisfies CachedGlyphs));
  return { train, test };
}

/**
 * `n` letter images from `glyphs`, balanced over the letters (image j is letter j mod 10), each a
 * random glyph of that letter (any font of the split, either case) drawn with its longer side
 * 14–21 px, turned by up to ±12°, its centre moved by up to ±2 px; 2×2 supersampled.
 */
export function drawLetters(glyphs: readonly Glyph[], n: number, rand: () => number): RealImages {
  const byLetter = LETTERS.map((_, l) => glyphs.filter((g) => g.letter === l));
  const pixels = new Uint8Array(n * SIDE * SIDE);
  const labels = new Int32Array(n);
  for (let j = 0; j < n; j++) {
    const l = j % LETTERS.length;
    const pool = byLetter[l];
    const g = pool[Math.floor(rand() * pool.length)];
    const size = 14 + rand() * 7;
    const scale = size / Math.max(g.w, g.h);
    const angle = ((rand() * 2 - 1) * 12 * Math.PI) / 180;
    const cx = SIDE / 2 + (rand() * 4 - 2);
    const cy = SIDE / 2 + (rand() * 4 - 2);
    const [cos, sin] = [Math.cos(angle), Math.sin(angle)];
    labels[j] = l;
    for (let y = 0; y < SIDE; y++) {
      for (let x = 0; x < SIDE; x++) {
        let acc = 0;
        for (const [ox, oy] of [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]) {
          // Output point → glyph coordinates: undo the shift, the rotation and the scale.
          const dx = x + ox - cx;
          const dy = y + oy - cy;
          const gx = (cos * dx + sin * dy) / scale + g.w / 2 - 0.5;
          const gy = (-sin * dx + cos * dy) / scale + g.h / 2 - 0.5;
          acc += sample(g.data, g.w, g.h, gx, gy);
        }
        pixels[j * SIDE * SIDE + y * SIDE + x] = Math.round(acc / 4);
      }
    }
  }
  return { side: SIDE, pixels, labels };
}
