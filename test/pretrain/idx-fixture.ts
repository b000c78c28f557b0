/** Writes a small Fashion-MNIST look-alike (gzip'd IDX files) so tests need no installed data set. */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gzipSync } from 'node:zlib';

export function idxImages(count: number, side: number, pixel: (i: number, y: number, x: number) => number): Buffer {
  const head = Buffer.alloc(16);
  head.writeUInt32BE(0x00000803, 0);
  head.writeUInt32BE(count, 4);
  head.writeUInt32BE(side, 8);
  head.writeUInt32BE(side, 12);
  const body = Buffer.alloc(count * side * side);
  for (let i = 0; i < count; i++) for (let y = 0; y < side; y++) for (let x = 0; x < side; x++) body[(i * side + y) * side + x] = pixel(i, y, x);
  return Buffer.concat([head, body]);
}

export function idxLabels(labels: number[]): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(0x00000801, 0);
  head.writeUInt32BE(labels.length, 4);
  return Buffer.concat([head, Buffer.from(labels)]);
}

/**
 * Class c is a bright horizontal bar at row 2c+4 (plus a little per-image noise), so a model can
 * tell the ten classes apart; `perClass` images per class in each split.
 */
export async function writeFakeFashionMnist(dir: string, perClass: { train: number; test: number }): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const [split, n] of [['train', perClass.train], ['t10k', perClass.test]] as const) {
    const labels = Array.from({ length: n * 10 }, (_, i) => i % 10);
    const img = idxImages(labels.length, 28, (i, y, x) => (Math.abs(y - (2 * labels[i] + 4)) <= 1 ? 200 + ((i * 7 + x) % 50) : (i * 13 + x * 3 + y) % 30));
    await writeFile(path.join(dir, `${split}-images-idx3-ubyte.gz`), gzipSync(img));
    await writeFile(path.join(dir, `${split}-labels-idx1-ubyte.gz`), gzipSync(idxLabels(labels)));
  }
}
