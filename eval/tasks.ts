/**
 * The transfer tasks, VTAB-1k style: 1,000 training images each (balanced), a separate test set,
 * all 28×28 grey like the backbone's pretraining data, none of them seen in pretraining:
 *
 *   fmnist-unseen   the four Fashion-MNIST classes held out of pretraining (Shirt, Sneaker, Bag,
 *                   Ankle boot) — new categories from the same domain ("natural").
 *   shapes          six silhouettes drawn in code with clutter and noise — a new domain.
 *   rotation        which of 0/90/180/270° an unseen-class item was turned by — a structured task
 *                   whose label is geometry, not category (VTAB's "structured" group).
 *   count           how many blobs (1–4) — structured, like CLEVR-count.
 *   digits          real handwritten digits 0–9 (scikit-learn's copy of the UCI digits; real-tasks.ts).
 *   letters         real glyphs A–J from system fonts, test fonts never used in training (real-tasks.ts).
 */
import { AppError } from '../src/errors.js';
import { FASHION_LABELS, HELD_OUT_CLASSES, indicesOfClasses, loadFashionMnist, type LabelledImages } from '../scripts/fashion-mnist.js';
import { prng, shuffled, type LabelledSet } from '../scripts/pretrain/train.js';
import { LETTERS, drawLetters, loadDigits, loadLetterGlyphs, type LetterGlyphs, type RealImages } from './real-tasks.js';
import { COUNT_LABELS, SHAPES, renderCounts, renderShapes, rotate90 } from './render.js';

export const TASK_IDS = ['fmnist-unseen', 'shapes', 'rotation', 'count', 'digits', 'letters'] as const;
export type TaskId = (typeof TASK_IDS)[number];

export interface Task {
  id: TaskId;
  title: string;
  group: 'natural' | 'structured' | 'new domain' | 'real, new domain';
  labels: string[];
  train: LabelledSet;
  test: LabelledSet;
}

export interface TaskSizes {
  train: number;
  test: number;
}

/** Up to `perClass` indices of each class, in a seeded random order, interleaved by class. */
function balancedPick(ids: number[], labelOf: (i: number) => number, classes: readonly number[], perClass: number, rand: () => number): number[] {
  const order = shuffled(ids.length, rand).map((i) => ids[i]);
  const picked: number[][] = classes.map((c) => order.filter((i) => labelOf(i) === c).slice(0, perClass));
  const short = picked.findIndex((p) => p.length < perClass);
  if (short >= 0) throw new AppError('invalid_dataset', `class ${classes[short]} has only ${picked[short].length} images, need ${perClass}`);
  const out: number[] = [];
  for (let k = 0; k < perClass; k++) for (const p of picked) out.push(p[k]);
  return out;
}

function gather(src: LabelledImages, ids: number[], label: (i: number) => number): LabelledSet {
  const per = src.rows * src.cols;
  const pixels = new Uint8Array(ids.length * per);
  ids.forEach((i, j) => pixels.set(src.pixels.subarray(i * per, (i + 1) * per), j * per));
  return { side: src.rows, pixels, labels: Int32Array.from(ids, label) };
}

function rotated(src: LabelledImages, ids: number[]): LabelledSet {
  const side = src.rows;
  const per = side * side;
  const pixels = new Uint8Array(ids.length * per);
  const labels = new Int32Array(ids.length);
  // Balanced rotations: image j gets j mod 4, and the image order is already random.
  ids.forEach((i, j) => {
    labels[j] = j % 4;
    rotate90(src.pixels, i * per, side, labels[j], pixels, j * per);
  });
  return { side, pixels, labels };
}

export interface FashionData {
  train: LabelledImages;
  test: LabelledImages;
}

/** The installed data the tasks are built from; each loaded only when a selected task needs it. */
export interface TaskSources {
  fashion?: FashionData;
  digits?: RealImages;
  letters?: LetterGlyphs;
}

/** `perClass` images of every class for training (seeded pick), all the others (up to `testMax`) for test. */
function splitReal(src: RealImages, classes: number, perClass: number, testMax: number, rand: () => number): { train: LabelledSet; test: LabelledSet } {
  const ids = Array.from({ length: src.labels.length }, (_, i) => i);
  const tr = balancedPick(ids, (i) => src.labels[i], Array.from({ length: classes }, (_, c) => c), perClass, rand);
  const used = new Set(tr);
  const rest = ids.filter((i) => !used.has(i));
  const te = shuffled(rest.length, rand).slice(0, testMax).map((k) => rest[k]).sort((a, b) => a - b);
  const take = (list: number[]): LabelledSet => {
    const per = src.side * src.side;
    const pixels = new Uint8Array(list.length * per);
    list.forEach((i, j) => pixels.set(src.pixels.subarray(i * per, (i + 1) * per), j * per));
    return { side: src.side, pixels, labels: Int32Array.from(list, (i) => src.labels[i]) };
  };
  return { train: take(tr), test: take(te) };
}

/** Builds one task from the installed data it needs (`sources`). Deterministic for a given seed. */
export function buildTask(id: TaskId, sizes: TaskSizes, seed: number, sources: TaskSources = {}): Task {
  const rand = prng(seed);
  const need = () => {
    if (!sources.fashion) throw new AppError('internal', `task ${id} needs Fashion-MNIST`);
    return sources.fashion;
  };
  const held = HELD_OUT_CLASSES as readonly number[];
  switch (id) {
    case 'fmnist-unseen': {
      const { train, test } = need();
      const pick = (src: LabelledImages, n: number) =>
        balancedPick(indicesOfClasses(src.labels, held), (i) => src.labels[i], held, Math.floor(n / held.length), rand);
      const label = (src: LabelledImages) => (i: number) => held.indexOf(src.labels[i]);
      const tr = pick(train, sizes.train);
      const te = pick(test, sizes.test);
      return {
        id,
        title: 'Fashion-MNIST, 4 unseen classes',
        group: 'natural',
        labels: held.map((c) => FASHION_LABELS[c]),
        train: gather(train, tr, label(train)),
        test: gather(test, te, label(test)),
      };
    }
    case 'rotation': {
      const { train, test } = need();
      // Any unseen-class item, each used once; the label is its rotation, not its class.
      const pick = (src: LabelledImages, n: number) => {
        const ids = indicesOfClasses(src.labels, held);
        return shuffled(ids.length, rand).slice(0, n).map((i) => ids[i]);
      };
      return {
        id,
        title: 'Rotation of unseen-class items (0/90/180/270°)',
        group: 'structured',
        labels: ['0°', '90°', '180°', '270°'],
        train: rotated(train, pick(train, sizes.train)),
        test: rotated(test, pick(test, sizes.test)),
      };
    }
    case 'shapes':
      return { id, title: 'Synthetic shapes (6 silhouettes, clutter, noise)', group: 'new domain', labels: [...SHAPES], train: renderShapes(sizes.train, rand), test: renderShapes(sizes.test, rand) };
    case 'count':
      return { id, title: 'Counting blobs (1–4)', group: 'structured', labels: [...COUNT_LABELS], train: renderCounts(sizes.train, rand), test: renderCounts(sizes.test, rand) };
    case 'digits': {
      if (!sources.digits) throw new AppError('internal', 'task digits needs the handwritten digits');
      const { train, test } = splitReal(sources.digits, 10, Math.floor(sizes.train / 10), sizes.test, rand);
      return { id, title: 'Handwritten digits 0–9 (UCI, via scikit-learn; real)', group: 'real, new domain', labels: [...'0123456789'], train, test };
    }
    case 'letters': {
      if (!sources.letters) throw new AppError('internal', 'task letters needs the font glyphs');
      return {
        id,
        title: 'Letters A–J in system fonts; test fonts never seen in training (real glyphs)',
        group: 'real, new domain',
        labels: [...LETTERS],
        train: drawLetters(sources.letters.train, Math.floor(sizes.train / 10) * 10, rand),
        test: drawLetters(sources.letters.test, sizes.test, rand),
      };
    }
  }
}

/** Loads only the data the selected tasks need. */
export async function loadTaskData(ids: readonly TaskId[], dataDir?: string): Promise<TaskSources> {
  const out: TaskSources = {};
  if (ids.some((t) => t === 'fmnist-unseen' || t === 'rotation')) {
    const [train, test] = await Promise.all([loadFashionMnist('train', dataDir), loadFashionMnist('t10k', dataDir)]);
    out.fashion = { train, test };
  }
  if (ids.includes('digits')) out.digits = await loadDigits();
  if (ids.includes('letters')) out.letters = await loadLetterGlyphs();
  return out;
}
