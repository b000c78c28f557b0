/**
 * A small, strict safetensors reader/writer (https://github.com/huggingface/safetensors format):
 * 8-byte little-endian header length, a JSON header, then the raw little-endian tensor bytes.
 * Our own code rather than a package because the format is tiny and we want every malformed file
 * to end in one clear AppError instead of a crash or an out-of-bounds read.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { AppError, type ErrorCode } from '../errors.js';

export type SafetensorsDtype = 'F32' | 'F16' | 'BF16';

export interface SafetensorsTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  /** Always float32. For F32 input this may be a view into the input bytes (no copy). */
  data: Float32Array;
}

export interface SafetensorsFile {
  tensors: Map<string, SafetensorsTensor>;
  metadata: Record<string, string>;
}

export interface ReadOptions {
  /** The AppError code for malformed files ('invalid_backbone', 'invalid_adapter', …). */
  code?: ErrorCode;
  /** What the file is, for messages ("backbone weights", "adapter"). */
  what?: string;
  /**
   * Tensors to leave out (not decoded, not returned, any dtype): buffers a checkpoint carries
   * that are not weights, e.g. a Swin's integer relative_position_index.
   */
  skip?: (name: string) => boolean;
}

const ITEM_SIZE: Record<SafetensorsDtype, number> = { F32: 4, F16: 2, BF16: 2 };
/** dtypes of the spec we recognise but cannot use, so the message can say "unsupported". */
const OTHER_DTYPES = new Set(['F64', 'F8_E4M3', 'F8_E5M2', 'I64', 'I32', 'I16', 'I8', 'U64', 'U32', 'U16', 'U8', 'BOOL']);
/** Headers beyond this are not weights files (the reference implementation uses 100 MB too). */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

interface Span {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  count: number;
  /** Byte offsets within the data section. */
  begin: number;
  end: number;
}

function failer(opts: ReadOptions): (msg: string) => never {
  const code = opts.code ?? 'bad_request';
  const what = opts.what ?? 'safetensors file';
  return (msg: string): never => {
    throw new AppError(code, `${what}: ${msg}`);
  };
}

/** The header's length from the first 8 bytes of a file of `size` bytes, checked. */
function headerLength(first8: Uint8Array, size: number, fail: (msg: string) => never): number {
  if (size < 8) fail(`not a safetensors file (${size} bytes)`);
  const headerLen = Number(new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true));
  if (headerLen < 2 || headerLen > MAX_HEADER_BYTES || headerLen > size - 8) {
    fail(`invalid header length ${headerLen} for a file of ${size} bytes`);
  }
  return headerLen;
}

/** The header's tensors (checked against `dataLen` data bytes) and metadata. */
function parseHeader(headerBytes: Uint8Array, dataLen: number, fail: (msg: string) => never, opts: ReadOptions): { spans: Span[]; metadata: Record<string, string> } {
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch {
    fail('header is not valid JSON');
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) fail('header is not a JSON object');
  const metadata: Record<string, string> = {};
  const spans: Span[] = [];
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) fail('__metadata__ is not an object');
      for (const [k, v] of Object.entries(entry as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`__metadata__.${k} is not a string`);
        metadata[k] = v as string;
      }
      continue;
    }
    if (opts.skip?.(name)) continue;
    if (typeof entry !== 'object' || entry === null) fail(`tensor '${name}' has no description`);
    const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
    if (typeof dtype !== 'string') fail(`tensor '${name}' has no dtype`);
    if (!(dtype as string in ITEM_SIZE)) {
      fail(OTHER_DTYPES.has(dtype as string)
        ? `tensor '${name}' has unsupported dtype ${dtype as string} (F32, F16 or BF16 only)`
        : `tensor '${name}' has unknown dtype ${JSON.stringify(dtype)}`);
    }
    if (!Array.isArray(shape) || !shape.every((s) => Number.isSafeInteger(s) && s >= 0)) {
      fail(`tensor '${name}' has an invalid shape`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      fail(`tensor '${name}' has invalid data_offsets`);
    }
    const [begin, end] = offsets as [number, number];
    const dt = dtype as SafetensorsDtype;
    const count = (shape as number[]).reduce((a, b) => a * b, 1);
    if (end < begin || end > dataLen) fail(`tensor '${name}' data [${begin}, ${end}) is out of bounds (${dataLen} data bytes)`);
    if (end - begin !== count * ITEM_SIZE[dt]) {
      fail(`tensor '${name}' has ${end - begin} bytes but shape [${(shape as number[]).join(', ')}] ${dt} needs ${count * ITEM_SIZE[dt]}`);
    }
    spans.push({ name, dtype: dt, shape: [...(shape as number[])], count, begin, end });
  }
  const sorted = [...spans].sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].begin < sorted[i - 1].end) fail(`tensors '${sorted[i - 1].name}' and '${sorted[i].name}' overlap`);
  }
  return { spans, metadata };
}

export function readSafetensors(bytes: Uint8Array, opts: ReadOptions = {}): SafetensorsFile {
  const fail = failer(opts);
  const headerLen = headerLength(bytes, bytes.length, fail);
  const dataStart = 8 + headerLen;
  const { spans, metadata } = parseHeader(bytes.subarray(8, dataStart), bytes.length - dataStart, fail, opts);
  const tensors = new Map<string, SafetensorsTensor>();
  for (const t of spans) tensors.set(t.name, { dtype: t.dtype, shape: t.shape, data: decode(bytes, dataStart + t.begin, t.count, t.dtype) });
  return { tensors, metadata };
}

/**
 * A safetensors file on disk read lazily: the header now, each tensor's data from the file each
 * time its `data` is read (a fresh array, not cached), so a caller can hold one tensor's bytes at a
 * time instead of the whole file. The file must not change while it is used.
 */
export function openSafetensorsFile(file: string, opts: ReadOptions = {}): SafetensorsFile & { size: number } {
  const fail = failer(opts);
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    const first8 = new Uint8Array(8);
    if (size >= 8) readSync(fd, first8, 0, 8, 0);
    const headerLen = headerLength(first8, size, fail);
    const headerBytes = new Uint8Array(headerLen);
    readSync(fd, headerBytes, 0, headerLen, 8);
    const dataStart = 8 + headerLen;
    const { spans, metadata } = parseHeader(headerBytes, size - dataStart, fail, opts);
    const tensors = new Map<string, SafetensorsTensor>();
    for (const t of spans) {
      const read = (): Float32Array => {
        const bytes = new Uint8Array(t.end - t.begin);
        const fdr = openSync(file, 'r');
        try {
          let done = 0;
          while (done < bytes.length) {
            const n = readSync(fdr, bytes, done, bytes.length - done, dataStart + t.begin + done);
            if (n === 0) fail(`file ended while reading tensor '${t.name}' (changed on disk?)`);
            done += n;
          }
        } finally {
          closeSync(fdr);
        }
        return decode(bytes, 0, t.count, t.dtype);
      };
      tensors.set(t.name, { dtype: t.dtype, shape: t.shape, get data() { return read(); } });
    }
    return { tensors, metadata, size };
  } finally {
    closeSync(fd);
  }
}

function decode(bytes: Uint8Array, offset: number, count: number, dtype: SafetensorsDtype): Float32Array {
  const abs = bytes.byteOffset + offset;
  if (dtype === 'F32') {
    // Zero-copy when aligned: backbones are hundreds of MB and get transposed into new arrays anyway.
    if (abs % 4 === 0) return new Float32Array(bytes.buffer, abs, count);
    return new Float32Array(bytes.slice(offset, offset + count * 4).buffer);
  }
  const view = new DataView(bytes.buffer, abs, count * 2);
  const out = new Float32Array(count);
  if (dtype === 'BF16') {
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < count; i++) bits[i] = view.getUint16(i * 2, true) << 16;
  } else {
    for (let i = 0; i < count; i++) out[i] = halfToFloat(view.getUint16(i * 2, true));
  }
  return out;
}

export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float → IEEE half, round to nearest even (used for writing F16 files, e.g. compact test models). */
export function floatToHalf(value: number): number {
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let r = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    if (rem > half || (rem === half && r & 1)) r++;
    return sign | r;
  }
  let r = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && r & 1)) r++;
  return sign | r;
}

/** float → bfloat16 bits, round to nearest even. */
export function floatToBf16(value: number): number {
  f32[0] = value;
  const x = u32[0];
  if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) return (x >>> 16) | 0x40;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

export interface TensorToWrite {
  name: string;
  shape: number[];
  data: Float32Array;
  /** Stored dtype; F32 unless said otherwise. */
  dtype?: SafetensorsDtype;
}

/** Writes tensors in the given order; the header is space-padded so the data starts 8-byte aligned. */
export function writeSafetensors(tensors: TensorToWrite[], metadata?: Record<string, string>): Buffer {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    const dtype = t.dtype ?? 'F32';
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.data.length) {
      throw new AppError('internal', `tensor '${t.name}': ${t.data.length} values for shape [${t.shape.join(', ')}]`);
    }
    if (t.name === '__metadata__' || t.name in header) throw new AppError('internal', `duplicate tensor name '${t.name}'`);
    const size = count * ITEM_SIZE[dtype];
    header[t.name] = { dtype, shape: t.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - ((8 + json.length) % 8)) % 8;
  if (pad > 0) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const out = Buffer.alloc(8 + json.length + offset);
  out.writeBigUInt64LE(BigInt(json.length), 0);
  json.copy(out, 8);
  let pos = 8 + json.length;
  for (const t of tensors) {
    const dtype = t.dtype ?? 'F32';
    if (dtype === 'F32') {
      // Hosts are little-endian (as tfjs itself assumes), so the float bytes copy as they are.
      Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).copy(out, pos);
      pos += t.data.byteLength;
    } else {
      const enc = dtype === 'F16' ? floatToHalf : floatToBf16;
      for (let i = 0; i < t.data.length; i++) out.writeUInt16LE(enc(t.data[i]), pos + i * 2);
      pos += t.data.length * 2;
    }
  }
  return out;
}
