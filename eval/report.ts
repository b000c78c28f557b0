/** docs/eval.md (tables) and docs/eval.svg (chart) from the study's results. */
import type { MethodResult } from './runner.js';
import { METHOD_IDS, type MethodId } from './methods/types.js';

export interface ReportContext {
  command: string;
  date: string;
  machine: string;
  /** git commit of the code that produced the numbers (+ '-dirty' with uncommitted changes). */
  code?: string;
  backbone: string;
  recipe: string;
  /** Free markdown appended after the tables (findings, notes). */
  notes?: string;
}

const pct = (v: number) => `${(v * 100).toFixed(1)}`;
const mib = (b: number) => (b / 2 ** 20).toFixed(2);
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

function methodsIn(results: MethodResult[]): MethodId[] {
  return METHOD_IDS.filter((m) => results.some((r) => r.method === m));
}

function tasksIn(results: MethodResult[]): string[] {
  return [...new Set(results.map((r) => r.task))];
}

export function evalMarkdown(results: MethodResult[], ctx: ReportContext): string {
  const methods = methodsIn(results);
  const tasks = tasksIn(results);
  const label = (m: MethodId) => results.find((r) => r.method === m)!.methodLabel;
  const cell = (t: string, m: MethodId) => results.find((r) => r.task === t && r.method === m);

  const accHeader = `| method | ${tasks.join(' | ')} | mean | trainable params | peak step memory (MiB) | train time (s, mean) |`;
  const accRule = `|---|${tasks.map(() => '---:').join('|')}|---:|---:|---:|---:|`;
  const accRows = methods.map((m) => {
    const rs = results.filter((r) => r.method === m);
    const accs = tasks.map((t) => cell(t, m));
    const params = [...new Set(rs.map((r) => r.trainableParams))].map((p) => p.toLocaleString('en-US')).join(' / ');
    return `| ${label(m)} | ${accs.map((r) => (r ? pct(r.testAcc) : '—')).join(' | ')} | **${pct(mean(rs.map((r) => r.testAcc)))}** | ${params} | ${mib(mean(rs.map((r) => r.peakBytes)))} | ${mean(rs.map((r) => r.trainSeconds)).toFixed(0)} |`;
  });

  const detail = results.map((r) => {
    const sweep = r.sweep.length ? r.sweep.map((p) => `${p.lr}: ${pct(p.valAcc)}`).join(', ') : '(none: defaults)';
    const lr = !r.lrChosenByStudy ? `${r.lr} (trainer's)` : `${r.lr}`;
    return `| ${r.task} | ${r.methodLabel} | ${sweep} | ${lr} | ${pct(r.valAcc)} | ${pct(r.testAcc)} | ${r.trainableParams.toLocaleString('en-US')} | ${mib(r.peakBytes)} | ${r.trainSeconds.toFixed(0)} |${r.note ? ` ${r.note}` : ''} |`;
  });

  const tenant = tenantSummary(results, tasks);

  const taskLines = tasks.map((t) => {
    const r = results.find((x) => x.task === t)!;
    const val = r.valImages;
    return `- **${t}** — ${r.taskTitle}: ${r.classes} classes, ${r.trainImages + val} training images (${r.trainImages} train + ${val} validation), ${r.testImages} test images.`;
  });

  return `# Transfer study: DTL against the usual baselines on the bundled backbone

Made by:

\`\`\`
${ctx.command}
\`\`\`

${ctx.date}, ${ctx.machine}${ctx.code ? `, code at commit ${ctx.code}` : ''}. Backbone: ${ctx.backbone}.

![test accuracy and peak training memory per method](eval.svg)

## Tasks (none seen in pretraining; digits and letters are real images)

${taskLines.join('\n')}

## Recipe

${ctx.recipe}

## Results: test accuracy (%) per task

${accHeader}
${accRule}
${accRows.join('\n')}

Trainable parameters include the head, so they depend on the task's class count ("a / b" lists
the values over the tasks). Peak step memory: tensor bytes allocated above the resting state during one optimisation step on
the same batch for every method, from pixels (DTL's prefix computed in the step, not taken from
the cache), measured with \`measurePeakBytes\` (tf.profile) after a warm-up step. It is the
framework's tensor memory, not process RSS. Train time: wall time of the reported run (the chosen
learning rate's; trainer-backed rows include their per-epoch validation and the final test pass),
feature or prefix caching included, the rest of the lr sweep excluded, on a shared 2-core machine
(other jobs were running at the same time, so times are noisy: compare methods, not runs).

${tenant}## Every run

| task | method | lr sweep (val acc %) | chosen lr | val acc % | test acc % | trainable params | peak step MiB | train s | note |
|---|---|---|---:|---:|---:|---:|---:|---:|---|
${detail.join('\n')}
${ctx.notes ? `\n${ctx.notes}\n` : ''}`;
}

const COLORS: Record<MethodId, string> = {
  pixel: '#cfcfcf',
  linear: '#9e9e9e',
  service: '#2ca02c',
  http: '#98df8a',
  dtl: '#1f77b4',
  'dtl+': '#17becf',
  lora: '#ff7f0e',
  full: '#d62728',
};

/**
 * What a tenant who sets nothing gets, next to the best hand-tuned adapter row and the two weak
 * baselines: the service defaults must beat the linear probe and the pixel classifier on every
 * task, and come close to the tuned rows' mean.
 */
function tenantSummary(results: MethodResult[], tasks: string[]): string {
  const has = (m: MethodId) => results.some((r) => r.method === m);
  if (!has('service')) return '';
  const acc = (t: string, m: MethodId) => results.find((r) => r.task === t && r.method === m)?.testAcc;
  const meanOf = (m: MethodId) => {
    const xs = tasks.map((t) => acc(t, m));
    return xs.every((x) => x !== undefined) ? mean(xs as number[]) : undefined;
  };
  const tuned = (['dtl', 'dtl+'] as MethodId[]).filter(has).sort((a, b) => (meanOf(b) ?? 0) - (meanOf(a) ?? 0))[0];
  const cols: [string, MethodId | undefined][] = [
    ['service defaults', 'service'],
    ...(has('http') ? [['same, over HTTP', 'http'] as [string, MethodId]] : []),
    [`best hand-tuned row (${tuned ?? '—'})`, tuned],
    ['linear probe', has('linear') ? 'linear' : undefined],
    ['pixel log. reg.', has('pixel') ? 'pixel' : undefined],
  ];
  const fmt = (v: number | undefined) => (v === undefined ? '—' : pct(v));
  const diff = (a: number | undefined, b: number | undefined) => {
    if (a === undefined || b === undefined) return '—';
    const d = ((a - b) * 100).toFixed(1);
    return Number(d) >= 0 ? `+${d.replace('-', '')}` : d;
  };
  const rows = [...tasks, 'mean'].map((t) => {
    const v = (m: MethodId | undefined) => (m === undefined ? undefined : t === 'mean' ? meanOf(m) : acc(t, m));
    const s = v('service');
    return `| ${t === 'mean' ? '**mean**' : t} | ${cols.map(([, m]) => fmt(v(m))).join(' | ')} | ${diff(s, v(tuned))} | ${diff(s, v('linear'))} | ${diff(s, v('pixel'))} |`;
  });
  return `## What a tenant gets with no hyperparameters

Test accuracy (%); the last three columns are the service defaults minus the hand-tuned row, the linear probe and the pixel classifier (points).${
    has('http') ? ' "Same, over HTTP": the same defaults through the running service — upload, train job, classify — which should match the trainer-direct column.' : ''
  }

| task | ${cols.map(([n]) => n).join(' | ')} | vs tuned | vs linear | vs pixel |
|---|${cols.map(() => '---:').join('|')}|---:|---:|---:|
${rows.join('\n')}

`;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** Grouped bars of test accuracy per task, and a bar chart of peak step memory per method. */
export function evalSvg(results: MethodResult[], title: string, memoryBatch = 32): string {
  const methods = methodsIn(results);
  const tasks = tasksIn(results);
  const label = (m: MethodId) => results.find((r) => r.method === m)!.methodLabel;
  const W = 960;
  const H = 420;
  const left = { x: 60, y: 50, w: 560, h: 300 };
  const right = { x: 700, y: 50, w: 220, h: 300 };
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`);

  // Left: accuracy, 0–100 %.
  const groups = [...tasks, 'mean'];
  const gw = left.w / groups.length;
  const bw = (gw * 0.8) / methods.length;
  const yOf = (acc: number) => left.y + left.h - acc * left.h;
  for (let p = 0; p <= 100; p += 20) {
    const y = yOf(p / 100);
    out.push(`<line x1="${left.x}" x2="${left.x + left.w}" y1="${y}" y2="${y}" stroke="#e0e0e0"/>`);
    out.push(`<text x="${left.x - 6}" y="${y + 4}" text-anchor="end">${p}</text>`);
  }
  out.push(`<text x="16" y="${left.y + left.h / 2}" transform="rotate(-90 16 ${left.y + left.h / 2})" text-anchor="middle">test accuracy (%)</text>`);
  groups.forEach((t, gi) => {
    const gx = left.x + gi * gw + gw * 0.1;
    methods.forEach((m, mi) => {
      const rs = results.filter((r) => r.method === m && (t === 'mean' || r.task === t));
      if (rs.length === 0) return;
      const acc = mean(rs.map((r) => r.testAcc));
      const x = gx + mi * bw;
      out.push(`<rect x="${x.toFixed(1)}" y="${yOf(acc).toFixed(1)}" width="${(bw - 1).toFixed(1)}" height="${(left.y + left.h - yOf(acc)).toFixed(1)}" fill="${COLORS[m]}"><title>${esc(`${label(m)} on ${t}: ${pct(acc)}%`)}</title></rect>`);
    });
    out.push(`<text x="${(left.x + gi * gw + gw / 2).toFixed(1)}" y="${left.y + left.h + 16}" text-anchor="middle"${t === 'mean' ? ' font-weight="bold"' : ''}>${esc(t)}</text>`);
  });
  out.push(`<line x1="${left.x}" x2="${left.x + left.w}" y1="${left.y + left.h}" y2="${left.y + left.h}" stroke="black"/>`);

  // Right: peak step memory (MiB), mean over tasks.
  const mem = methods.map((m) => mean(results.filter((r) => r.method === m).map((r) => r.peakBytes)) / 2 ** 20);
  const top = Math.max(...mem, 1e-9) * 1.15;
  const rbw = right.w / methods.length;
  out.push(`<text x="${right.x + right.w / 2}" y="${right.y - 10}" text-anchor="middle">peak step memory (MiB, batch ${memoryBatch})</text>`);
  methods.forEach((m, i) => {
    const h = (mem[i] / top) * right.h;
    const x = right.x + i * rbw + rbw * 0.15;
    out.push(`<rect x="${x.toFixed(1)}" y="${(right.y + right.h - h).toFixed(1)}" width="${(rbw * 0.7).toFixed(1)}" height="${h.toFixed(1)}" fill="${COLORS[m]}"><title>${esc(`${label(m)}: ${mem[i].toFixed(2)} MiB`)}</title></rect>`);
    out.push(`<text x="${(x + rbw * 0.35).toFixed(1)}" y="${(right.y + right.h - h - 4).toFixed(1)}" text-anchor="middle" font-size="11">${mem[i].toFixed(1)}</text>`);
  });
  out.push(`<line x1="${right.x}" x2="${right.x + right.w}" y1="${right.y + right.h}" y2="${right.y + right.h}" stroke="black"/>`);

  // Legend, wrapped so that every entry stays inside the picture.
  const perRow = Math.floor((W - left.x) / 150);
  methods.forEach((m, i) => {
    const x = left.x + (i % perRow) * 150;
    const y = H - 30 + Math.floor(i / perRow) * 16;
    out.push(`<rect x="${x}" y="${y - 10}" width="12" height="12" fill="${COLORS[m]}"/>`);
    out.push(`<text x="${x + 18}" y="${y}">${esc(label(m))}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
