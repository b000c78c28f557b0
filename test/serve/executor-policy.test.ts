import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { pickExecutor, type ExecutorView } from '../../src/serve/executor-policy.js';

const view = (v: { busy?: boolean; ready?: boolean; idleSince?: number; resident?: string[] }): ExecutorView => ({
  busy: v.busy ?? false,
  ready: v.ready ?? true,
  idleSince: v.idleSince ?? 0,
  isResident: (k) => (v.resident ?? []).includes(k),
});

describe('pickExecutor', () => {
  it('never picks a busy executor; undefined when all are busy', () => {
    expect(pickExecutor([view({ busy: true }), view({ busy: true })], ['a'])).toBeUndefined();
    expect(pickExecutor([view({ busy: true, resident: ['a'] }), view({})], ['a'])).toBe(1);
  });

  it('prefers the idle executor holding most of the batch adapters, then a ready one, then the one idle longest', () => {
    const ex = [view({ resident: ['a'], idleSince: 1 }), view({ resident: ['a', 'b'], idleSince: 9 }), view({ idleSince: 0 })];
    expect(pickExecutor(ex, ['a', 'b'])).toBe(1);
    expect(pickExecutor(ex, ['c'])).toBe(2); // nothing resident anywhere: idle longest
    expect(pickExecutor([view({ ready: false, idleSince: 0 }), view({ idleSince: 5 })], ['c'])).toBe(1);
  });

  it('property: the choice is idle, and no idle executor holds more of the batch', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ busy: fc.boolean(), ready: fc.boolean(), idleSince: fc.nat(20), resident: fc.subarray(['a', 'b', 'c', 'd']) }), { minLength: 1, maxLength: 6 }),
        fc.subarray(['a', 'b', 'c', 'd'], { minLength: 1 }),
        (specs, keys) => {
          const ex = specs.map(view);
          const i = pickExecutor(ex, keys);
          if (specs.every((s) => s.busy)) {
            expect(i).toBeUndefined();
            return;
          }
          expect(i).toBeDefined();
          expect(specs[i!].busy).toBe(false);
          const held = (s: (typeof specs)[number]) => keys.filter((k) => s.resident.includes(k)).length;
          for (const s of specs) if (!s.busy) expect(held(s)).toBeLessThanOrEqual(held(specs[i!]));
        },
      ),
    );
  });
});
