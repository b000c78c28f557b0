/** The serving prefix-activation cache's policy (pure data, no tensors). */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PrefixActivationCache, type PrefixRows } from '../../src/serve/prefix-activation-cache.js';

const PER = 10; // floats per token matrix in these tests

function rows(split: number, tag: number): PrefixRows {
  const inputs = Array.from({ length: split }, (_, i) => new Float32Array(PER).fill(tag * 100 + i));
  return { split, inputs, x: new Float32Array(PER).fill(tag * 100 + split) };
}

const bytesOf = (split: number) => (split + 1) * PER * 4 + 256;

describe('PrefixActivationCache', () => {
  it('is off with a zero budget: stores nothing, counts nothing', () => {
    const c = new PrefixActivationCache({ budgetBytes: 0, backboneId: 'b' });
    c.put('h', rows(2, 1));
    expect(c.get('h', 2)).toBeUndefined();
    expect(c.stats()).toMatchObject({ entries: 0, bytes: 0, hits: 0, misses: 0 });
  });

  it('an entry serves its split and every shorter one (x = the input of block split)', () => {
    const c = new PrefixActivationCache({ budgetBytes: 1 << 20, backboneId: 'b' });
    c.put('h', rows(4, 7));
    const same = c.get('h', 4)!;
    expect(same.inputs).toHaveLength(4);
    expect(same.x[0]).toBe(704);
    const shorter = c.get('h', 2)!;
    expect(shorter.split).toBe(2);
    expect(shorter.inputs.map((a) => a[0])).toEqual([700, 701]);
    expect(shorter.x[0]).toBe(702);
    expect(c.get('h', 5)).toBeUndefined(); // a longer prefix than stored: miss
    expect(c.stats()).toMatchObject({ hits: 2, misses: 1 });
  });

  it('a longer prefix replaces a shorter one; a shorter one never replaces a longer one', () => {
    const c = new PrefixActivationCache({ budgetBytes: 1 << 20, backboneId: 'b' });
    c.put('h', rows(2, 1));
    c.put('h', rows(5, 2));
    expect(c.stats()).toMatchObject({ entries: 1, bytes: bytesOf(5) });
    c.put('h', rows(3, 3));
    expect(c.get('h', 3)!.inputs[0][0]).toBe(200);
  });

  it('keys include the backbone identity', () => {
    const a = new PrefixActivationCache({ budgetBytes: 1 << 20, backboneId: 'a' });
    a.put('h', rows(1, 1));
    expect(a.get('h', 1)).toBeDefined();
    const b = new PrefixActivationCache({ budgetBytes: 1 << 20, backboneId: 'b' });
    expect(b.get('h', 1)).toBeUndefined();
  });

  it('property: bytes never exceed the budget, LRU order decides evictions, accounting is exact', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: bytesOf(0), max: 6 * bytesOf(3) }),
        fc.array(fc.tuple(fc.boolean(), fc.nat(6), fc.integer({ min: 0, max: 3 })), { maxLength: 60 }),
        (budget, ops) => {
          const c = new PrefixActivationCache({ budgetBytes: budget, backboneId: 'b' });
          const model = new Map<string, number>(); // key → split, in LRU order
          for (const [isPut, k, split] of ops) {
            const key = `k${k}`;
            if (isPut) {
              const old = model.get(key);
              if (old !== undefined && old >= split) continue;
              if (bytesOf(split) > budget) continue;
              model.delete(key);
              model.set(key, split);
              let total = [...model.values()].reduce((a, s) => a + bytesOf(s), 0);
              for (const [mk, ms] of model) {
                if (total <= budget) break;
                model.delete(mk);
                total -= bytesOf(ms);
              }
              c.put(key, rows(split, k));
            } else {
              const got = c.get(key, split);
              const has = model.get(key);
              expect(got !== undefined).toBe(has !== undefined && has >= split);
              if (got !== undefined) {
                model.delete(key);
                model.set(key, has!);
                expect(got.inputs.every((a, i) => a[0] === k * 100 + i)).toBe(true);
              }
            }
            const s = c.stats();
            expect(s.bytes).toBeLessThanOrEqual(budget);
            expect(s.entries).toBe(model.size);
            expect(s.bytes).toBe([...model.values()].reduce((a, sp) => a + bytesOf(sp), 0));
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
