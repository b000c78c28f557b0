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
 */
import { AppError } from '../src/errors.js';
import { FASHION_LABELS, HELD_OUT_CLASSES, indicesOfClasses, loadFashionMnist, type LabelledImages } from '../scripts/fashion-mnist.js';
import { prng, shuffled, type LabelledSet } from '../scripts/pretrain/train.js';
import { COUNT_LABELS, SHAPES, renderCounts, renderShapes, rotate90 } from './render.js';

export const TASK_IDS = ['fmnist-unseen', 'shapes', 'rotation', 'count'] as const;
export type TaskId = (typeof TASK_IDS)[number];

export interface Task {
  id: TaskId;
  title: string;
  group: 'natural' | 'structured' | 'new domain';
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

/** Builds one task; Fashion-MNIST based tasks need `data`. Deterministic for a given seed. */
export function buildTask(id: TaskId, sizes: TaskSizes, seed: number, data?: FashionData): Task {
  const rand = prng(seed);
  const need = () => {
    if (!data) throw new AppError('internal', `task ${id} needs Fashion-MNIST`);
    return data;
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
  }
}

/** Loads Fashion-MNIST only if a selected task needs it. */
export async function loadTaskData(ids: readonly TaskId[], dataDir?: string): Promise<FashionData | undefined> {
  if (!ids.some((t) => t === 'fmnist-unseen' || t === 'rotation')) return undefined;
  const [train, test] = await Promise.all([loadFashionMnist('train', dataDir), loadFashionMnist('t10k', dataDir)]);
  return { train, test };
}

/** Stratified split of 0..n−1 into train/validation (validation = `fraction` of each class). */
export function stratifiedSplit(labels: Int32Array, fraction: number, seed: number): { train: number[]; val: number[] } {
  const rand = prng(seed);
  const byClass = new Map<number, number[]>();
  labels.forEach((l, i) => byClass.set(l, [...(byClass.get(l) ?? []), i]));
  const train: number[] = [];
  const val: number[] = [];
  for (const ids of byClass.values()) {
    const order = shuffled(ids.length, rand).map((k) => ids[k]);
    const nVal = Math.min(ids.length - 1, Math.round(ids.length * fraction));
    val.push(...order.slice(0, nVal));
    train.push(...order.slice(nVal));
  }
  return { train: train.sort((a, b) => a - b), val: val.sort((a, b) => a - b) };
}
