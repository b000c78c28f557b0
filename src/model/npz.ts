/**
 * NumPy `.npz` reading: a zip (stored or deflated) of `.npy` arrays, the format of Google's
 * ViT checkpoints (`ViT-B_16.npz`, which timm and the DTL authors' code load). Only what those
 * hold is accepted — little-endian float arrays (f2 / f4 / f8) in C order — and every array
 * comes back as float32. Any other content ends in one AppError naming the entry.
 */
import yauzl from 'yauzl';
import { AppError, type ErrorCode } from '../errors.js';
import { halfToFloat } from './safetensors.js';

export interface NpyArray {
  shape: number[];
  data: Float32Array;
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

/** Parses one `.npy` file (format versions 1–3). */
export function readNpy(bytes: Uint8Array, fail: (msg: string) => never): NpyArray {
  if (bytes.length < 10 || MAGIC.some((b, i) => bytes[i] !== b)) fail('not a .npy array');
  const major = bytes[6];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  if (major < 1 || major > 3 || start + headerLen > bytes.length) fail('bad .npy header');
  const header = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(bytes.subarray(start, start + headerLen));
  const descr = /'descr':\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) fail(`unreadable .npy header ${JSON.stringify(header.trim())}`);
  if (fortran === 'True') fail('Fortran-ordered arrays are not supported');
  const shape = shapeText!
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map(Number);
  if (shape.some((n) => !Number.isInteger(n) || n < 0)) fail(`bad shape (${shapeText})`);
  const count = shape.reduce((a, b) => a * b, 1);
  const itemSize = { '<f2': 2, '<f4': 4, '<f8': 8 }[descr!];
  if (itemSize === undefined) fail(`dtype '${descr}' is not supported (little-endian float16/32/64 only)`);
  const dataStart = start + headerLen;
  if (bytes.length - dataStart !== count * itemSize!) fail(`holds ${bytes.length - dataStart} data bytes, expected ${count * itemSize!}`);
  const raw = bytes.slice(dataStart); // aligned copy
  let data: Float32Array;
  if (descr === '<f4') data = new Float32Array(raw.buffer, raw.byteOffset, count);
  else if (descr === '<f8') data = Float32Array.from(new Float64Array(raw.buffer, raw.byteOffset, count));
  else data = Float32Array.from(new Uint16Array(raw.buffer, raw.byteOffset, count), halfToFloat);
  return { shape, data };
}

/** Every array of an `.npz`, by name without the `.npy` suffix. */
export async function readNpz(bytes: Uint8Array, opts: { code: ErrorCode; what: string }): Promise<Map<string, NpyArray>> {
  const fail = (msg: string): never => {
    throw new AppError(opts.code, `${opts.what}: ${msg}`);
  };
  let zip: yauzl.ZipFile;
  try {
    zip = await yauzl.fromBufferPromise(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), { lazyEntries: true, validateEntrySizes: true });
  } catch (err) {
    return fail(`not an .npz (zip) file: ${(err as Error).message}`);
  }
  const out = new Map<string, NpyArray>();
  try {
    for (;;) {
      const entry = await new Promise<yauzl.Entry | null>((resolve, reject) => {
        zip.once('entry', resolve);
        zip.once('end', () => resolve(null));
        zip.once('error', reject);
        zip.readEntry();
      });
      zip.removeAllListeners();
      if (entry === null) break;
      if (entry.fileName.endsWith('/')) continue;
      if (!entry.fileName.endsWith('.npy')) fail(`entry '${entry.fileName}' is not a .npy array`);
      const stream = await zip.openReadStreamPromise(entry);
      const chunks: Buffer[] = [];
      for await (const c of stream) chunks.push(c as Buffer);
      const name = entry.fileName.slice(0, -'.npy'.length);
      out.set(name, readNpy(Buffer.concat(chunks), (msg) => fail(`'${name}': ${msg}`)));
    }
  } catch (err) {
    if (err instanceof AppError) throw err;
    fail(`cannot read: ${(err as Error).message}`);
  } finally {
    zip.close();
  }
  return out;
}
