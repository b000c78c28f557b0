/**
 * Writes examples/shoes.zip (a data set: one folder per class of 28×28 grey PNGs) and
 * examples/sneaker.png (an image none of the zip holds) from Fashion-MNIST's test split, as
 * installed by the Debian package `dataset-fashion-mnist` (MIT licence, see examples/README.md).
 * Deterministic: the first PER_CLASS images of each class in file order, so a rerun writes the
 * same pictures.
 *
 *   node --import tsx scripts/make-examples.ts [--out examples] [--per-class 40]
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { indicesOfClasses, loadFashionMnist } from './fashion-mnist.js';

/** Folder name → Fashion-MNIST class index. Sandal was seen in pretraining; Sneaker and Ankle boot were not. */
const CLASSES: Record<string, number> = { sneaker: 7, sandal: 5, ankle_boot: 9 };
const SNEAKER = 7;

interface YazlZipFile {
  addBuffer(buf: Buffer, name: string, opts?: { compress?: boolean; mtime?: Date }): void;
  end(): void;
  outputStream: Readable;
}
const yazl = createRequire(import.meta.url)('yazl') as { ZipFile: new () => YazlZipFile };
const FIXED_TIME = new Date('2024-01-01T00:00:00Z');

async function png(pixels: Uint8Array, side: number): Promise<Buffer> {
  return sharp(Buffer.from(pixels), { raw: { width: side, height: side, channels: 1 } }).png({ compressionLevel: 9 }).toBuffer();
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { out: { type: 'string', default: 'examples' }, 'per-class': { type: 'string', default: '40' } } });
  const perClass = Number(values['per-class']);
  const data = await loadFashionMnist('t10k');
  const side = data.rows;
  const image = (i: number) => data.pixels.subarray(i * side * side, (i + 1) * side * side);

  const zip = new yazl.ZipFile();
  for (const [folder, cls] of Object.entries(CLASSES)) {
    const picked = indicesOfClasses(data.labels, [cls]).slice(0, perClass);
    for (const [n, i] of picked.entries()) {
      zip.addBuffer(await png(image(i), side), `shoes/${folder}/${String(n).padStart(3, '0')}.png`, { compress: false, mtime: FIXED_TIME });
    }
  }
  zip.end();
  const chunks: Buffer[] = [];
  for await (const c of zip.outputStream as AsyncIterable<Buffer>) chunks.push(c as Buffer);

  // The first sneaker after those in the zip: an image the adapter never trained on.
  const query = indicesOfClasses(data.labels, [SNEAKER])[perClass];
  const sneaker = await sharp(Buffer.from(image(query)), { raw: { width: side, height: side, channels: 1 } })
    .resize(112, 112, { kernel: 'nearest' })
    .png({ compressionLevel: 9 })
    .toBuffer();

  await mkdir(values.out, { recursive: true });
  await writeFile(path.join(values.out, 'shoes.zip'), Buffer.concat(chunks));
  await writeFile(path.join(values.out, 'sneaker.png'), sneaker);
  console.log(`wrote ${values.out}/shoes.zip (${Object.keys(CLASSES).length} classes × ${perClass}) and ${values.out}/sneaker.png (t10k #${query})`);
}

await main();
