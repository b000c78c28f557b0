import { beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors.js';
import { floatToBf16, floatToHalf, halfToFloat, initBackend, readSafetensors, writeSafetensors } from '../../src/model/index.js';
import { expectAppError } from './expect.js';

/** Hand-assembles a file from a header object and a data section. */
function raw(header: unknown, data = new Uint8Array(0), headerLen?: number): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLen ?? json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

describe('safetensors', () => {
  beforeAll(() => initBackend('wasm'));

  it('round-trips F32 tensors and metadata, with an 8-byte aligned data section', () => {
    const a = Float32Array.from([1, -2.5, 3.25, 1e-20, -0, 6]);
    const b = Float32Array.from([7]);
    const buf = writeSafetensors([{ name: 'x.weight', shape: [2, 3], data: a }, { name: 'y', shape: [], data: b }], { dtl: '{"k":1}' });
    expect(Number(buf.readBigUInt64LE(0)) % 8).toBe(0);
    const f = readSafetensors(buf);
    expect(f.metadata).toEqual({ dtl: '{"k":1}' });
    expect(f.tensors.get('x.weight')).toMatchObject({ dtype: 'F32', shape: [2, 3] });
    expect(Array.from(f.tensors.get('x.weight')!.data)).toEqual(Array.from(a));
    expect(Array.from(f.tensors.get('y')!.data)).toEqual([7]);
  });

  it('reads F16 and BF16 as float32 (exact for representable values, rounded otherwise)', () => {
    const exact = Float32Array.from([0, 1, -2, 0.5, 65504, 2 ** -24, -0.375]);
    const buf = writeSafetensors([
      { name: 'h', shape: [exact.length], data: exact, dtype: 'F16' },
      { name: 'b', shape: [3], data: Float32Array.from([1, -3.5, 1e30]), dtype: 'BF16' },
      { name: 'r', shape: [1], data: Float32Array.from([0.1]), dtype: 'F16' },
    ]);
    const f = readSafetensors(buf);
    expect(Array.from(f.tensors.get('h')!.data)).toEqual(Array.from(exact));
    expect(f.tensors.get('h')!.dtype).toBe('F16');
    const bf = f.tensors.get('b')!.data;
    expect(bf[0]).toBe(1);
    expect(bf[1]).toBe(-3.5);
    expect(Math.abs(bf[2] - 1e30) / 1e30).toBeLessThan(1 / 128);
    expect(Math.abs(f.tensors.get('r')!.data[0] - 0.1)).toBeLessThan(1e-4);
  });

  it('converts halves exactly on a few known bit patterns', () => {
    expect(halfToFloat(0x3c00)).toBe(1);
    expect(halfToFloat(0xc000)).toBe(-2);
    expect(halfToFloat(0x7c00)).toBe(Infinity);
    expect(Number.isNaN(halfToFloat(0x7e00))).toBe(true);
    expect(halfToFloat(0x0001)).toBe(2 ** -24);
    expect(floatToHalf(1)).toBe(0x3c00);
    expect(floatToHalf(1e6)).toBe(0x7c00);
    expect(floatToBf16(1)).toBe(0x3f80);
  });

  it('refuses malformed files with the caller-chosen code', async () => {
    const eight = new Uint8Array(8);
    const opts = { code: 'invalid_adapter' as const, what: 'adapter' };
    await expectAppError(() => readSafetensors(new Uint8Array(3), opts), 'invalid_adapter', /not a safetensors file/);
    await expectAppError(() => readSafetensors(raw({}, eight, 1000), opts), 'invalid_adapter', /header length/);
    await expectAppError(() => readSafetensors(raw('{not json'), opts), 'invalid_adapter', /not valid JSON/);
    await expectAppError(() => readSafetensors(raw('[1,2]'), opts), 'invalid_adapter', /not a JSON object/);
    await expectAppError(
      () => readSafetensors(raw({ t: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, eight), opts),
      'invalid_adapter',
      /'t' data \[0, 16\) is out of bounds/,
    );
    await expectAppError(
      () => readSafetensors(raw({ t: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, eight), opts),
      'invalid_adapter',
      /'t' has 8 bytes but shape \[3\] F32 needs 12/,
    );
    await expectAppError(
      () =>
        readSafetensors(
          raw({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, eight),
          opts,
        ),
      'invalid_adapter',
      /overlap/,
    );
    await expectAppError(
      () => readSafetensors(raw({ t: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, eight), opts),
      'invalid_adapter',
      /unsupported dtype I64/,
    );
    await expectAppError(
      () => readSafetensors(raw({ t: { dtype: 'Q4', shape: [1], data_offsets: [0, 1] } }, eight), opts),
      'invalid_adapter',
      /unknown dtype/,
    );
    await expectAppError(
      () => readSafetensors(raw({ __metadata__: { a: 1 } }), { code: 'invalid_backbone' }),
      'invalid_backbone',
      /__metadata__\.a is not a string/,
    );
  });

  it('survives random corruption of a valid file: an AppError or a parse, never a crash', () => {
    const good = writeSafetensors([{ name: 'w', shape: [4, 4], data: new Float32Array(16).fill(1) }], { m: 'x' });
    let seed = 42;
    for (let trial = 0; trial < 300; trial++) {
      const bad = Uint8Array.from(good);
      for (let k = 0; k < 3; k++) {
        seed = (seed * 1103515245 + 12345) >>> 0;
        bad[seed % Math.min(bad.length, 80)] = seed >>> 24;
      }
      try {
        readSafetensors(bad, { code: 'invalid_adapter' });
      } catch (err) {
        expect(err).toBeInstanceOf(AppError);
      }
    }
  });
});
