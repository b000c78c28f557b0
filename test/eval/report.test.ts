/** docs/eval.md and eval.svg with the "over HTTP" row: its column in the tenant table, a legend that fits. */
import { describe, expect, it } from 'vitest';
import { evalMarkdown, evalSvg } from '../../eval/report.js';
import type { MethodResult } from '../../eval/runner.js';
import { METHOD_IDS, type MethodId } from '../../eval/methods/types.js';

const ACC: Record<MethodId, number> = { pixel: 0.9, linear: 0.8, service: 0.95, http: 0.94, dtl: 0.96, 'dtl+': 0.97, lora: 0.93, full: 0.92 };

function result(method: MethodId, task: 'digits' | 'letters', acc: number): MethodResult {
  return {
    task,
    taskTitle: task,
    method,
    methodLabel: method === 'http' ? 'Service over HTTP (defaults)' : `label ${method}`,
    classes: 10,
    trainImages: 800,
    valImages: 200,
    testImages: 797,
    sweep: [],
    lr: 0.03,
    lrChosenByStudy: false,
    valAcc: acc,
    testAcc: acc,
    trainableParams: 1000,
    peakBytes: 2 ** 20,
    trainSeconds: 10,
    losses: [1],
    note: method === 'http' ? 'classified 797 PNGs over HTTP' : undefined,
  };
}

const ctx = { command: 'npm run eval -- --methods http', date: '2026-12-02', machine: 'test', backbone: 'b', recipe: 'r' };

describe('eval report with the over-HTTP row', () => {
  const all = METHOD_IDS.flatMap((m) => [result(m, 'digits', ACC[m]), result(m, 'letters', ACC[m] - 0.1)]);

  it('puts the HTTP row next to the service defaults, in the results and in the tenant table', () => {
    const md = evalMarkdown(all, ctx);
    const rows = md.split('\n');
    const service = rows.findIndex((l) => l.startsWith('| label service |'));
    expect(rows[service + 1]).toMatch(/^\| Service over HTTP \(defaults\) \| 94\.0 \| 84\.0 \| \*\*89\.0\*\* \|/);
    expect(md).toContain('| task | service defaults | same, over HTTP | best hand-tuned row (dtl+) | linear probe | pixel log. reg. | vs tuned | vs linear | vs pixel |');
    expect(md).toContain('| digits | 95.0 | 94.0 | 97.0 | 80.0 | 90.0 | -2.0 | +15.0 | +5.0 |');
    expect(md).toContain('classified 797 PNGs over HTTP');
  });

  it('leaves the column out when the row was not run', () => {
    const md = evalMarkdown(all.filter((r) => r.method !== 'http'), ctx);
    expect(md).not.toContain('over HTTP');
    expect(md).toContain('| task | service defaults | best hand-tuned row (dtl+) |');
  });

  it('keeps every legend entry inside the picture', () => {
    const svg = evalSvg(all, 'title');
    const width = Number(/width="(\d+)"/.exec(svg)![1]);
    const height = Number(/height="(\d+)"/.exec(svg)![1]);
    const legend = [...svg.matchAll(/<rect x="(\d+)" y="(\d+)" width="12" height="12"/g)].map((m) => [Number(m[1]), Number(m[2])]);
    expect(legend).toHaveLength(METHOD_IDS.length);
    for (const [x, y] of legend) {
      expect(x + 140).toBeLessThanOrEqual(width);
      expect(y + 12).toBeLessThanOrEqual(height);
    }
  });
});
