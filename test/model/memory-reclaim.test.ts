/**
 * reclaimMemory: a dropped buffer is really collected (no --expose-gc in this process), and on
 * Linux with glibc — this machine and CI — malloc_trim runs too. What it saves is measured by
 * bench P11 (peak RSS over a ViT-B/16 load), not here.
 */
import { describe, expect, it } from 'vitest';
import { reclaimMemory, trimHeapsInBackground } from '../../src/model/memory-reclaim.js';

const glibc = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime;

describe('reclaimMemory', () => {
  it('collects garbage without --expose-gc', async () => {
    expect((globalThis as { gc?: unknown }).gc).toBeUndefined();
    let big: Float32Array | undefined = new Float32Array(4 * 2 ** 20);
    const ref = new WeakRef(big);
    big = undefined;
    // A WeakRef keeps its target alive until the current job ends.
    await new Promise((r) => setImmediate(r));
    const done = reclaimMemory();
    expect(done.collected).toBe(true);
    expect(ref.deref()).toBeUndefined();
  });

  it('trims the heaps where glibc is the allocator (Linux with glibc: this machine and CI)', () => {
    expect(reclaimMemory()).toEqual({ collected: true, trimmed: process.platform === 'linux' && glibc !== undefined });
  });

  it('can be called again and again', () => {
    for (let i = 0; i < 3; i++) expect(reclaimMemory().collected).toBe(true);
  });
});

describe('trimHeapsInBackground', () => {
  it('trims on the thread pool where glibc is the allocator, and says so', async () => {
    expect(await trimHeapsInBackground()).toBe(process.platform === 'linux' && glibc !== undefined);
  });
});
