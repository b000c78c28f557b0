/** IdleReclaimer: runs once after a quiet spell, never while batches keep coming or one runs, never after close. */
import { describe, expect, it } from 'vitest';
import { IdleReclaimer } from '../../src/threads/idle-reclaim.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('IdleReclaimer', () => {
  it('runs once when no batch follows within the idle time', async () => {
    let ran = 0;
    const r = new IdleReclaimer(() => ran++, 30);
    r.busy();
    r.idle();
    await sleep(120);
    expect(ran).toBe(1);
    expect(r.runs).toBe(1);
    await sleep(60);
    expect(ran).toBe(1); // once per quiet spell, not on every tick
    r.close();
  });

  it('does not run while batches keep coming', async () => {
    let ran = 0;
    // Wide margins: a loaded CI machine stretches a 20 ms sleep, never to 400 ms.
    const r = new IdleReclaimer(() => ran++, 400);
    for (let i = 0; i < 8; i++) {
      r.busy();
      r.idle();
      await sleep(20);
    }
    expect(ran).toBe(0);
    await sleep(900);
    expect(ran).toBe(1);
    r.close();
  });

  it('never runs after close', async () => {
    let ran = 0;
    const r = new IdleReclaimer(() => ran++, 20);
    r.busy();
    r.idle();
    r.close();
    r.busy();
    r.idle();
    await sleep(80);
    expect(ran).toBe(0);
  });

  it('never runs while a batch is running, however long it takes', async () => {
    let ran = 0;
    const r = new IdleReclaimer(() => ran++, 20);
    r.busy();
    r.idle();
    r.busy(); // the next batch starts before the timer fires, and runs long
    await sleep(100);
    expect(ran).toBe(0);
    r.idle();
    await sleep(100);
    expect(ran).toBe(1);
    r.close();
  });
});
