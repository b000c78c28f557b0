import { describe, expect, it } from 'vitest';
import { childArgs, taskGroups } from '../../eval/parallel.js';

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
