import { describe, expect, it } from 'vitest';
import { startInTurns } from '../../src/services/in-turns.js';

describe('startInTurns', () => {
  it('starts one item per event-loop turn, so I/O callbacks run between synchronous starts', async () => {
    const order: string[] = [];
    let ticks = 0;
    const tick = () => {
      ticks++;
      order.push(`tick ${ticks}`);
      if (ticks < 10) setImmediate(tick);
    };
    setImmediate(tick);
    const results = await startInTurns([1, 2, 3, 4], async (n) => {
      order.push(`start ${n}`);
      return n * 10;
    });
    expect(results).toEqual([10, 20, 30, 40]);
    // Between every two starts the loop turned at least once.
    const starts = order.map((e, i) => [e, i] as const).filter(([e]) => e.startsWith('start')).map(([, i]) => i);
    for (let k = 1; k < starts.length; k++) expect(order.slice(starts[k - 1] + 1, starts[k]).some((e) => e.startsWith('tick')), order.join(', ')).toBe(true);
  });

  it('overlaps asynchronous work, keeps the order of results and rejects with the first failure without an unhandled rejection', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (r: unknown) => unhandled.push(r);
    process.on('unhandledRejection', onUnhandled);
    try {
      let running = 0;
      let most = 0;
      const slow = (ms: number, v: string) =>
        new Promise<string>((resolve) => {
          running++;
          most = Math.max(most, running);
          setTimeout(() => {
            running--;
            resolve(v);
          }, ms);
        });
      expect(await startInTurns([30, 10, 20], (ms, i) => slow(ms, `r${i}`))).toEqual(['r0', 'r1', 'r2']);
      expect(most).toBe(3);
      const failing = startInTurns([0, 1, 2], async (n) => {
        if (n === 0) throw new Error('first fails at once');
        await new Promise((r) => setTimeout(r, 5));
        return n;
      });
      await expect(failing).rejects.toThrow('first fails at once');
      await new Promise((r) => setTimeout(r, 20));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});
