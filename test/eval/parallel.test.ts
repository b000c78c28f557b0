import { describe, expect, it } from 'vitest';
import { childArgs, completeTasks, latestResults, taskGroups } from '../../eval/parallel.js';
import type { MethodResult } from '../../eval/runner.js';

describe('eval --jobs', () => {
  it('splits tasks round-robin without empty groups', () => {
    expect(taskGroups(['fmnist-unseen', 'shapes', 'rotation'], 2)).toEqual([['fmnist-unseen', 'rotation'], ['shapes']]);
    expect(taskGroups(['shapes'], 4)).toEqual([['shapes']]);
    expect(taskGroups(['shapes', 'count'], 1)).toEqual([['shapes', 'count']]);
  });

  it('passes every option but the ones the parent sets per child', () => {
    expect(childArgs(['--quick', '--tasks', 'a,b', '--jobs=2', '--epochs', '3', '--out', 'x', '--notes', 'n.md', '--no-sweep'])).toEqual(['--quick', '--epochs', '3', '--no-sweep']);
  });
});

describe('eval --report-from a,b', () => {
  it('keeps only tasks that have every method (a job stopped mid-task leaves its last task out)', () => {
    const r = (task: string, method: string) => ({ task, method }) as MethodResult;
    const { kept, dropped } = completeTasks([r('digits', 'pixel'), r('digits', 'dtl'), r('shapes', 'pixel'), r('letters', 'pixel'), r('letters', 'dtl')]);
    expect(kept.map((x) => `${x.task}/${x.method}`)).toEqual(['digits/pixel', 'digits/dtl', 'letters/pixel', 'letters/dtl']);
    expect(dropped).toEqual(['shapes']);
  });

  it('a later file re-running some rows replaces them, keeping the rest', () => {
    const r = (task: string, method: string, testAcc: number) => ({ task, method, testAcc }) as MethodResult;
    const { results, replaced } = latestResults([
      [r('digits', 'pixel', 0.9), r('digits', 'service', 0.7)],
      [r('digits', 'service', 0.95), r('letters', 'service', 0.6)],
    ]);
    expect(results.map((x) => `${x.task}/${x.method}/${x.testAcc}`)).toEqual(['digits/pixel/0.9', 'digits/service/0.95', 'letters/service/0.6']);
    expect(replaced).toEqual(['digits/service']);
  });
});

describe('lr ladder', () => {
  it('steps along 1–3–10 in both directions', async () => {
    const { nextLr } = await import('../../eval/runner.js');
    expect(nextLr(0.03, 1)).toBe(0.1);
    expect(nextLr(0.01, 1)).toBe(0.03);
    expect(nextLr(0.1, 1)).toBe(0.3);
    expect(nextLr(0.001, -1)).toBe(0.0003);
    expect(nextLr(0.0003, -1)).toBe(0.0001);
    expect(nextLr(1e-4, 1)).toBe(3e-4);
  });
});
