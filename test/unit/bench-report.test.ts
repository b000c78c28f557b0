/** The committed forms of a bench run: docs/bench.md keeps its notes; the README table is replaced in place. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { benchMarkdown, markdownTable, readmeWithTable, README_END, README_START } from '../../bench/lib/report.js';
import type { BenchResult } from '../../bench/lib/types.js';

const rows: BenchResult[] = [
  { name: 'P1 a | b', value: 0.97, goal: '>= 0.95', pass: true, detail: 'sizes' },
  { name: 'P6 p50', value: 8.1, goal: '', pass: null, detail: 'ms' },
  { name: 'P7 ratio', value: 1.5, goal: '<= 1.15', pass: false, detail: 'why' },
  { name: 'P9 crashed', value: NaN, goal: '', pass: false, detail: 'bench failed: x' },
];
const meta = { startedAt: new Date('2026-11-29T10:00:00Z'), seconds: 1800, command: 'npm run bench' };

describe('bench report', () => {
  it('tables every row with its verdict, escaping pipes', () => {
    const t = markdownTable(rows).split('\n');
    expect(t).toHaveLength(2 + rows.length);
    expect(t[2]).toBe('| P1 a \\| b | 0.97 | >= 0.95 | pass |');
    expect(t[3]).toBe('| P6 p50 | 8.1 | — | — |');
    expect(t[4]).toBe('| P7 ratio | 1.5 | <= 1.15 | **miss** |');
    expect(t[5]).toBe('| P9 crashed | failed | — | **miss** |');
  });

  it('keeps the hand-written notes of the previous docs/bench.md', () => {
    const first = benchMarkdown(rows, meta, undefined);
    expect(first).toContain('2026-11-29, ');
    expect(first).toContain('- **P7 ratio** — why');
    const edited = `${first}\n## Why P7 misses\n\nmeasured reasons\n`;
    const second = benchMarkdown(rows.slice(0, 2), meta, edited);
    expect(second).toContain('## Why P7 misses\n\nmeasured reasons');
    expect(second).not.toContain('P7 ratio');
    expect(second.match(/<!-- notes/g)).toHaveLength(1);
  });

  it('replaces only what is between the README markers, and the README has them', () => {
    const readme = `intro\n${README_START}\nold table\n${README_END}\noutro\n`;
    const out = readmeWithTable(readme, rows, meta)!;
    expect(out.startsWith(`intro\n${README_START}\nLatest full run: 2026-11-29`)).toBe(true);
    expect(out).not.toContain('old table');
    expect(out.endsWith(`${README_END}\noutro\n`)).toBe(true);
    expect(readmeWithTable('no markers', rows, meta)).toBeUndefined();
    const real = readFileSync('README.md', 'utf8');
    expect(real.indexOf(README_START)).toBeGreaterThan(0);
    expect(real.indexOf(README_END)).toBeGreaterThan(real.indexOf(README_START));
  });
});
