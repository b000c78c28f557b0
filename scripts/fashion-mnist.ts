/**
 * Fashion-MNIST from the Debian package `dataset-fashion-mnist` (gzip'd IDX files under
 * /usr/share/datasets/fashion-mnist): a strict IDX reader plus the split helpers the pretraining
 * script and the transfer study share. Pixels stay uint8 (28×28, 0 = background) until a batch is
 * built, so all 70,000 images take 55 MB.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { AppError } from '../src/errors.js';

export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

export const FASHION_LABELS = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
] as const;

/**
 * The backbone is pretrained on these six classes only; Shirt, Sneaker, Bag and Ankle boot stay
 * unseen for the transfer study (Shirt is the hardest Fashion-MNIST class, Sneaker/Ankle boot and
 * Bag have no pretraining look-alike except Sandal, so the held-out task needs new features).
 */
export const PRETRAIN_CLASSES = [0, 1, 2, 3, 4, 5] as const;
export const HELD_OUT_CLASSES = [6, 7, 8, 9] as const;

export interface IdxImages {
  count: number;
  rows: number;
  cols: number;
  /** count × rows × cols bytes, row-major. */
  pixels: Uint8Array;
}

export interface LabelledImages extends IdxImages {
  labels: Uint8Array;
}

const IDX_UBYTE = 0x08;

function fail(msg: string): never {
  throw new AppError('invalid_dataset', msg);
}

/** Header of an IDX file of unsigned bytes: magic 0x0000 08 <dims>, then big-endian u32 sizes. */
function idxHeader(bytes: Uint8Array, dims: number, what: string): { sizes: number[]; offset: number } {
  if (bytes.length < 4 + 4 * dims) fail(`${what}: IDX file too short (${bytes.length} bytes)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint16(0) !== 0 || bytes[2] !== IDX_UBYTE) fail(`${what}: not an IDX file of unsigned bytes`);
  if (bytes[3] !== dims) fail(`${what}: IDX file has ${bytes[3]} dimensions, expected ${dims}`);
  const sizes = Array.from({ length: dims }, (_, i) => view.getUint32(4 + 4 * i));
  const offset = 4 + 4 * dims;
  const expected = sizes.reduce((a, b) => a * b, 1);
  if (bytes.length - offset !== expected) fail(`${what}: IDX payload is ${bytes.length - offset} bytes, header says ${expected}`);
  return { sizes, offset };
}

/** Parses an IDX3 image file (already gunzipped). */
export function parseIdxImages(bytes: Uint8Array, what = 'images'): IdxImages {
  const { sizes, offset } = idxHeader(bytes, 3, what);
  const [count, rows, cols] = sizes;
  return { count, rows, cols, pixels: bytes.subarray(offset) };
}

/** Parses an IDX1 label file (already gunzipped); every label must be < classes. */
export function parseIdxLabels(bytes: Uint8Array, classes = 10, what = 'labels'): Uint8Array {
  const { offset } = idxHeader(bytes, 1, what);
  const labels = bytes.subarray(offset);
  const bad = labels.findIndex((l) => l >= classes);
  if (bad >= 0) fail(`${what}: label ${labels[bad]} at index ${bad} is not below ${classes}`);
  return labels;
}

/** gunzip when the bytes start with the gzip magic, else pass through. */
function maybeGunzip(bytes: Uint8Array): Uint8Array {
  return bytes[0] === 0x1f && bytes[1] === 0x8b ? gunzipSync(bytes) : bytes;
}

export function missingDataMessage(dir: string): string {
  return (
    `Fashion-MNIST not found in ${dir}. Install it with:\n` +
    '  sudo apt-get install dataset-fashion-mnist\n' +
    '(or point FASHION_MNIST_DIR at a folder holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, ' +
    't10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz)'
  );
}

/** Loads one split ('train' = 60,000 images, 't10k' = 10,000). */
export async function loadFashionMnist(split: 'train' | 't10k', dir = process.env.FASHION_MNIST_DIR ?? FASHION_MNIST_DIR): Promise<LabelledImages> {
  const find = (base: string) => [path.join(dir, `${base}.gz`), path.join(dir, base)].find((f) => existsSync(f));
  const imgFile = find(`${split}-images-idx3-ubyte`);
  const lblFile = find(`${split}-labels-idx1-ubyte`);
  if (!imgFile || !lblFile) fail(missingDataMessage(dir));
  const [imgBytes, lblBytes] = await Promise.all([readFile(imgFile), readFile(lblFile)]);
  const images = parseIdxImages(maybeGunzip(imgBytes), path.basename(imgFile));
  const labels = parseIdxLabels(maybeGunzip(lblBytes), 10, path.basename(lblFile));
  if (labels.length !== images.count) fail(`${split}: ${images.count} images but ${labels.length} labels`);
  return { ...images, labels };
}

/** Indices of the images whose label is in `classes`, in file order. */
export function indicesOfClasses(labels: Uint8Array, classes: readonly number[]): number[] {
  const keep = new Set(classes);
  const out: number[] = [];
  labels.forEach((l, i) => {
    if (keep.has(l)) out.push(i);
  });
  return out;
}
