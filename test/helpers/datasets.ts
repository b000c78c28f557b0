/**
 * Small learnable image data sets built in code, and writers that pack them in every form the
 * ingestion accepts. Shared by the ingestion and training tests.
 *
 * Each class is a shape (circle, square, triangle, …) in its own hue band on a random grey
 * background, with seeded jitter in position, size and colour: easy for a tiny ViT, not trivial.
 */
import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import sharp from 'sharp';

export interface DatasetImage {
  label: string;
  /** File name inside the class folder, e.g. `003.png`. */
  name: string;
  data: Buffer;
  split?: 'train' | 'val' | 'test';
}

export interface ShapesOptions {
  classes: number;
  perClass: number;
  /** Rendered side length in pixels. */
  size: number;
  seed: number;
  format?: 'png' | 'jpeg';
}

/** mulberry32: a tiny seeded PRNG, enough for test data. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const SHAPES = ['circle', 'square', 'triangle', 'cross', 'hstripes', 'vstripes', 'diamond', 'ring'] as const;

function shapeSvg(shape: (typeof SHAPES)[number], cx: number, cy: number, r: number, fill: string, size: number): string {
  switch (shape) {
    case 'circle':
      return `<circle cx="${cx}" cy="${cy}" r="${r}" fill="${fill}"/>`;
    case 'square':
      return `<rect x="${cx - r}" y="${cy - r}" width="${2 * r}" height="${2 * r}" fill="${fill}"/>`;
    case 'triangle':
      return `<polygon points="${cx},${cy - r} ${cx - r},${cy + r} ${cx + r},${cy + r}" fill="${fill}"/>`;
    case 'cross':
      return `<rect x="${cx - r}" y="${cy - r / 3}" width="${2 * r}" height="${(2 * r) / 3}" fill="${fill}"/><rect x="${cx - r / 3}" y="${cy - r}" width="${(2 * r) / 3}" height="${2 * r}" fill="${fill}"/>`;
    case 'diamond':
      return `<polygon points="${cx},${cy - r} ${cx + r},${cy} ${cx},${cy + r} ${cx - r},${cy}" fill="${fill}"/>`;
    case 'ring':
      return `<circle cx="${cx}" cy="${cy}" r="${r * 0.75}" fill="none" stroke="${fill}" stroke-width="${r / 2}"/>`;
    case 'hstripes':
    case 'vstripes': {
      const step = Math.max(2, Math.round(size / 8));
      let out = '';
      for (let p = 0; p < size; p += 2 * step) {
        out += shape === 'hstripes'
          ? `<rect x="0" y="${p}" width="${size}" height="${step}" fill="${fill}"/>`
          : `<rect x="${p}" y="0" width="${step}" height="${size}" fill="${fill}"/>`;
      }
      return out;
    }
  }
}

function hsl(h: number, s: number, l: number): string {
  return `hsl(${h.toFixed(1)},${s.toFixed(0)}%,${l.toFixed(0)}%)`;
}

export function shapeLabel(k: number): string {
  const shape = SHAPES[k % SHAPES.length];
  const variant = Math.floor(k / SHAPES.length);
  return variant === 0 ? shape : `${shape}-${variant}`;
}

/** Renders `classes × perClass` images; labels from `shapeLabel`, names `000.png`, `001.png`, … */
export async function makeShapesDataset(opts: ShapesOptions): Promise<DatasetImage[]> {
  const rand = rng(opts.seed);
  const { size } = opts;
  const format = opts.format ?? 'png';
  const out: DatasetImage[] = [];
  for (let k = 0; k < opts.classes; k++) {
    const hue = (k * 360) / opts.classes;
    for (let i = 0; i < opts.perClass; i++) {
      const bg = Math.round(30 + rand() * 60);
      const r = size * (0.22 + rand() * 0.12);
      const cx = size / 2 + (rand() - 0.5) * size * 0.2;
      const cy = size / 2 + (rand() - 0.5) * size * 0.2;
      const fill = hsl(hue + (rand() - 0.5) * (180 / opts.classes), 70 + rand() * 30, 45 + rand() * 15);
      const svg =
        `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}">` +
        `<rect width="${size}" height="${size}" fill="${hsl(0, 0, bg)}"/>` +
        shapeSvg(SHAPES[k % SHAPES.length], cx, cy, r, fill, size) +
        `</svg>`;
      const img = sharp(Buffer.from(svg)).removeAlpha();
      const data = format === 'png' ? await img.png().toBuffer() : await img.jpeg({ quality: 90 }).toBuffer();
      out.push({ label: shapeLabel(k), name: `${String(i).padStart(3, '0')}.${format === 'png' ? 'png' : 'jpg'}`, data });
    }
  }
  return out;
}

/** Assigns the last `val` and `test` images of every class to those splits, the rest to train. */
export function assignSplits(images: DatasetImage[], per: { val: number; test: number }): DatasetImage[] {
  const byLabel = new Map<string, DatasetImage[]>();
  for (const img of images) byLabel.set(img.label, [...(byLabel.get(img.label) ?? []), img]);
  const out: DatasetImage[] = [];
  for (const group of byLabel.values()) {
    group.forEach((img, i) => {
      const fromEnd = group.length - i;
      const split = fromEnd <= per.test ? 'test' : fromEnd <= per.test + per.val ? 'val' : 'train';
      out.push({ ...img, split });
    });
  }
  return out;
}

/** A solid-colour (or given raw RGB) PNG of exact size; handy for known-pixel assertions. */
export async function solidPng(width: number, height: number, rgb: [number, number, number]): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } }).png().toBuffer();
}

export async function rawRgbPng(width: number, height: number, pixels: Uint8Array): Promise<Buffer> {
  return sharp(Buffer.from(pixels), { raw: { width, height, channels: 3 } }).png().toBuffer();
}

// ---------------------------------------------------------------------------------------------
// Zip writing (yazl has no bundled types; this is the slice we use).

interface YazlZipFile {
  addBuffer(buf: Buffer, name: string, opts?: { compress?: boolean; compressionLevel?: number; mtime?: Date }): void;
  addEmptyDirectory(name: string, opts?: { mtime?: Date }): void;
  end(): void;
  outputStream: Readable;
}
const yazl = createRequire(import.meta.url)('yazl') as { ZipFile: new () => YazlZipFile };

export type ZipItem = { name: string; data: Buffer; compress?: boolean; compressionLevel?: number } | { dir: string };

const FIXED_TIME = new Date('2024-01-01T00:00:00Z');

/** Builds a zip in memory (tests only; the code under test never buffers uploads). */
export async function makeZip(items: ZipItem[]): Promise<Buffer> {
  const zip = new yazl.ZipFile();
  for (const it of items) {
    if ('dir' in it) zip.addEmptyDirectory(it.dir, { mtime: FIXED_TIME });
    else {
      const level = it.compressionLevel;
      zip.addBuffer(it.data, it.name, level === undefined
        ? { compress: it.compress ?? false, mtime: FIXED_TIME }
        : { compress: level > 0, compressionLevel: level, mtime: FIXED_TIME });
    }
  }
  zip.end();
  const chunks: Buffer[] = [];
  for await (const c of zip.outputStream as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

/**
 * Replaces every occurrence of `from` with `to` (same byte length) — how tests craft entry names
 * yazl refuses to write (`../`, absolute, non-UTF-8). Names appear in the local header and the
 * central directory; CRCs cover data only, so the archive stays well-formed.
 */
export function replaceBytes(buf: Buffer, from: Buffer | string, to: Buffer | string): Buffer {
  const f = typeof from === 'string' ? Buffer.from(from, 'latin1') : from;
  const t = typeof to === 'string' ? Buffer.from(to, 'latin1') : to;
  if (f.length !== t.length) throw new Error('replaceBytes needs equal lengths');
  const out = Buffer.from(buf);
  let at = out.indexOf(f);
  let n = 0;
  while (at >= 0) {
    t.copy(out, at);
    n++;
    at = out.indexOf(f, at + f.length);
  }
  if (n === 0) throw new Error(`replaceBytes: '${f.toString('latin1')}' not found`);
  return out;
}

/** `<label>/<name>`, or `<split>/<label>/<name>` when `splits`; `wrapper/` in front if given. */
export async function zipClassFolders(images: DatasetImage[], opts: { splits?: boolean; wrapper?: string } = {}): Promise<Buffer> {
  const pre = opts.wrapper ? `${opts.wrapper}/` : '';
  return makeZip(
    images.map((img) => ({
      name: `${pre}${opts.splits ? `${img.split ?? 'train'}/` : ''}${img.label}/${img.name}`,
      data: img.data,
      compress: true,
    })),
  );
}

function imagePath(img: DatasetImage, i: number): string {
  return `images/${String(i).padStart(5, '0')}-${img.name}`;
}

function csvField(s: string): string {
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** Images under `images/` with a `labels.csv` (`path,label,split`) at the root. */
export async function zipWithCsvManifest(images: DatasetImage[]): Promise<Buffer> {
  const rows = ['path,label,split', ...images.map((img, i) => [imagePath(img, i), img.label, img.split ?? ''].map(csvField).join(','))];
  return makeZip([
    { name: 'labels.csv', data: Buffer.from(rows.join('\r\n') + '\r\n'), compress: true },
    ...images.map((img, i) => ({ name: imagePath(img, i), data: img.data, compress: true })),
  ]);
}

/** Images under `images/` with a `labels.jsonl` (`{"path","label","split"?}`) at the root. */
export async function zipWithJsonlManifest(images: DatasetImage[]): Promise<Buffer> {
  const lines = images.map((img, i) => JSON.stringify({ path: imagePath(img, i), label: img.label, ...(img.split ? { split: img.split } : {}) }));
  return makeZip([
    { name: 'labels.jsonl', data: Buffer.from(lines.join('\n') + '\n'), compress: true },
    ...images.map((img, i) => ({ name: imagePath(img, i), data: img.data, compress: true })),
  ]);
}

/** JSONL body: one `{"image": base64, "label", "split"?}` per line. */
export function jsonlText(images: DatasetImage[]): string {
  return images
    .map((img) => JSON.stringify({ image: img.data.toString('base64'), label: img.label, ...(img.split ? { split: img.split } : {}) }))
    .join('\n') + '\n';
}

/** A stream that hands `data` out in chunks, as a network upload would. */
export function bufferStream(data: Buffer | string, chunkSize = 64 * 1024): Readable {
  const buf = typeof data === 'string' ? Buffer.from(data) : data;
  return Readable.from(
    (function* () {
      for (let i = 0; i < buf.length; i += chunkSize) yield buf.subarray(i, i + chunkSize);
    })(),
  );
}

/** A JSONL upload stream of `images`. */
export function jsonlStream(images: DatasetImage[]): Readable {
  return bufferStream(jsonlText(images));
}

/**
 * A valid 1-bit greyscale PNG of any size, built without rendering it: the IDAT holds deflated zero
 * rows (20000×20000 → ~50 MB of zeros → ~50 KB compressed). Decoders see the true dimensions.
 */
export async function craftLargePng(width: number, height: number): Promise<Buffer> {
  const { crc32, deflateSync } = await import('node:zlib');
  const chunk = (type: string, body: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(body.length);
    const tb = Buffer.concat([Buffer.from(type, 'latin1'), body]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(tb));
    return Buffer.concat([len, tb, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 1; // bit depth
  ihdr[9] = 0; // greyscale
  const rows = Buffer.alloc((1 + Math.ceil(width / 8)) * height);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(rows, { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}
