/**
 * Block-scaled 12-bit integers: a float32 array cut into blocks of 32, each held as signed
 * integers in [−2047, 2047] times a step of m / 2047, m = the block's largest |value| rounded up
 * to a float16 (stored), two values in three bytes: 1.5 bytes a value plus 2 per block (12.5
 * bits). The error is at most half a step, ≈ absmax_block / 4094 — for normally distributed
 * weights about the rms error of float16 (both ≈ 3e-4 of the weights' standard deviation), worse
 * where a block holds an outlier. What `compact` resident adapters hold their heads in
 * (resident-adapter.ts).
 */
import { floatToHalf, halfToFloat } from './safetensors.js';

export const INT12_BLOCK = 32;
const MAX = 2047;

export interface Int12Blocks {
  /** Values held (the decoded length). */
  readonly length: number;
  /** Pairs of 12-bit two's-complement integers, 3 bytes a pair: lo8(a), hi4(a) | lo4(b) << 4, hi8(b). */
  readonly packed: Uint8Array;
  /** Per block of INT12_BLOCK values, its largest |value| rounded up to a float16 (bits); the step is that / 2047. */
  readonly scales: Uint16Array;
}

export function int12Bytes(length: number): number {
  return Math.ceil(length / 2) * 3 + Math.ceil(length / INT12_BLOCK) * 2;
}

/** The smallest float16 ≥ v (v ≥ 0): the integers rounded against it stay within ±2047. */
function halfUp(v: number): number {
  let h = floatToHalf(v);
  if (halfToFloat(h) < v) h += 1; // positive halves order like their bits
  return h;
}

/** Encodes finite values (round to nearest); null when a value is beyond float16's range (|v| > 65504). */
export function encodeInt12(src: Float32Array): Int12Blocks | null {
  const n = src.length;
  const blocks = Math.ceil(n / INT12_BLOCK);
  const scales = new Uint16Array(blocks);
  const q = new Int16Array(n + 1); // one spare: an odd length packs a zero partner
  for (let b = 0; b < blocks; b++) {
    const from = b * INT12_BLOCK;
    const to = Math.min(n, from + INT12_BLOCK);
    let absmax = 0;
    for (let i = from; i < to; i++) absmax = Math.max(absmax, Math.abs(src[i]));
    if (absmax === 0) continue;
    scales[b] = halfUp(absmax);
    if (scales[b] >= 0x7c00) return null;
    // Rounded against the stored step, so decoding is exactly q × step.
    const inv = MAX / halfToFloat(scales[b]);
    for (let i = from; i < to; i++) {
      const v = Math.round(src[i] * inv);
      q[i] = v > MAX ? MAX : v < -MAX ? -MAX : v;
    }
  }
  const packed = new Uint8Array(Math.ceil(n / 2) * 3);
  for (let i = 0, o = 0; i < n; i += 2, o += 3) {
    const a = q[i] & 0xfff;
    const c = q[i + 1] & 0xfff;
    packed[o] = a & 0xff;
    packed[o + 1] = (a >> 8) | ((c & 0xf) << 4);
    packed[o + 2] = c >> 4;
  }
  return { length: n, packed, scales };
}

/** Decodes into `out` (at least `length` long). */
export function decodeInt12(src: Int12Blocks, out: Float32Array): void {
  const { length: n, packed } = src;
  // A plain loop: Float32Array.from with a map function is several times slower (it runs per batch).
  const scales = new Float32Array(src.scales.length);
  for (let b = 0; b < scales.length; b++) scales[b] = halfToFloat(src.scales[b]) / MAX;
  for (let i = 0, o = 0; i < n; i += 2, o += 3) {
    const b0 = packed[o];
    const b1 = packed[o + 1];
    const b2 = packed[o + 2];
    // Sign-extend 12 bits: shift to the top of an int32 and back.
    const a = ((b0 | ((b1 & 0x0f) << 8)) << 20) >> 20;
    const c = (((b1 >> 4) | (b2 << 4)) << 20) >> 20;
    out[i] = a * scales[(i / INT12_BLOCK) | 0];
    if (i + 1 < n) out[i + 1] = c * scales[((i + 1) / INT12_BLOCK) | 0];
  }
}
