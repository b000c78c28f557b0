/** Block-scaled 12-bit integers: exact packing, the half-step error bound, odd lengths and zero blocks. */
import { describe, expect, it } from 'vitest';
import { decodeInt12, encodeInt12, int12Bytes, INT12_BLOCK } from '../../src/model/int12.js';
import { rng } from '../helpers/tiny-backbone.js';
import { halfStep } from './expect.js';

describe('int12 blocks', () => {
  it('decodes every value to within half a step of its block, odd lengths and zero blocks included', () => {
    const r = rng(9);
    for (const n of [1, 2, 63, 64, 65, 129, 1000]) {
      const src = Float32Array.from({ length: n }, () => r.normal() * 0.05);
      if (n >= 128) src.fill(0, 64, 128); // an all-zero block
      const enc = encodeInt12(src)!;
      expect(enc.packed.byteLength + enc.scales.byteLength).toBe(int12Bytes(n));
      const out = new Float32Array(n);
      decodeInt12(enc, out);
      for (let b = 0; b * INT12_BLOCK < n; b++) {
        const block = src.subarray(b * INT12_BLOCK, (b + 1) * INT12_BLOCK);
        const absmax = Math.max(...Array.from(block, Math.abs));
        block.forEach((v, j) => expect(Math.abs(out[b * INT12_BLOCK + j] - v)).toBeLessThanOrEqual(halfStep(absmax)));
      }
      if (n >= 128) expect(Array.from(out.subarray(64, 128)).every((v) => v === 0)).toBe(true);
    }
  });

  it('refuses values beyond float16 range', () => {
    expect(encodeInt12(Float32Array.from([1, 7e4]))).toBeNull();
    expect(encodeInt12(Float32Array.from([1, 6e4]))).not.toBeNull();
  });

  it('keeps the sign and both ends of the range', () => {
    const src = Float32Array.from([1, -1, 0.5, -0.5, 0, 2047 / 2047, -2047 / 2047]);
    const out = new Float32Array(src.length);
    decodeInt12(encodeInt12(src)!, out);
    src.forEach((v, i) => {
      expect(Math.sign(out[i])).toBe(Math.sign(v));
      expect(Math.abs(out[i] - v)).toBeLessThanOrEqual(halfStep(1));
    });
    expect(out[4]).toBe(0);
    expect(out[0]).toBeCloseTo(1, 6);
    expect(out[1]).toBeCloseTo(-1, 6);
  });
});
