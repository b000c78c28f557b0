/**
 * The committed forms of a full bench run: `docs/bench.md` (table, machine, command, every row's
 * detail, then hand-written notes kept from the previous file) and the README's copy of the table
 * (between the bench-table markers).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import type { BenchResult } from './types.js';

export interface RunMeta {
  startedAt: Date;
  seconds: number;
  command: string;
}

const NOTES_MARKER = '<!-- notes: kept when the file is regenerated -->';
export const README_START = '<!-- bench-table:start -->';
export const README_END = '<!-- bench-table:end -->';

/**
 * The CPU as the rows depend on it: model, family/model numbers and the widest SIMD it has. Machines
 * of one kind differ here (an AVX-512 EPYC one day, an AVX2-only one the next), and native
 * kernels' speed — onnxruntime's, OpenBLAS's — moves with it, about 2× for SGEMM.
 */
export function cpuDescription(): string {
  const cpus = os.cpus();
  let extra = '';
  try {
    const info = readFileSync('/proc/cpuinfo', 'utf8');
    const field = (k: string) => new RegExp(`^${k}\\s*:\\s*(.*)$`, 'm').exec(info)?.[1]?.trim();
    const flags = new Set((field('flags') ?? '').split(/\s+/));
    const simd = flags.has('avx512f') ? 'AVX-512' : flags.has('avx2') ? 'AVX2, no AVX-512' : flags.has('avx') ? 'AVX' : 'SSE';
    extra = ` (family ${field('cpu family') ?? '?'} model ${field('model') ?? '?'}, ${simd})`;
  } catch {
    // not Linux: the model name alone
  }
  return `${cpus.length} × ${cpus[0]?.model ?? 'cpu'}${extra}`;
}

export function machine(): string {
  return `${cpuDescription()}, ${Math.round(os.totalmem() / 1024 ** 3)} GiB, Node ${process.version}, TensorFlow.js wasm backend (1 thread)`;
}

function commit(): string {
  try {
    const sha = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no', '--', 'src', 'bench', 'backbones', ':!bench/results.json'], { encoding: 'utf8' }).trim() !== '';
    return dirty ? `${sha} with uncommitted changes` : sha;
  } catch {
    return 'unknown';
  }
}

const cell = (s: string) => s.replace(/\|/g, '\\|');
const verdict = (r: BenchResult) => (r.pass === null ? '—' : r.pass ? 'pass' : '**miss**');

export function markdownTable(rows: BenchResult[]): string {
  return [
    '| benchmark | value | goal | result |',
    '|---|---:|---:|---|',
    ...rows.map((r) => `| ${cell(r.name)} | ${Number.isFinite(r.value) ? r.value : 'failed'} | ${cell(r.goal) || '—'} | ${verdict(r)} |`),
  ].join('\n');
}

export function headline(meta: RunMeta): string {
  return `${meta.startedAt.toISOString().slice(0, 10)}, ${machine()}, code at ${commit()}; \`${meta.command}\` took ${Math.round(meta.seconds / 60)} min.`;
}

export function benchMarkdown(rows: BenchResult[], meta: RunMeta, previous: string | undefined): string {
  const notesAt = previous?.indexOf(NOTES_MARKER) ?? -1;
  const notes = notesAt >= 0 ? previous!.slice(notesAt + NOTES_MARKER.length).trim() : '';
  return [
    '# Benchmarks',
    '',
    'Made by:',
    '',
    '```',
    meta.command,
    '```',
    '',
    headline(meta),
    'Methods and sizes: [bench/README.md](../bench/README.md). Ratios are measured side by side in one process;',
    'the machine is shared and noisy, so compare the ratios, not absolute times between runs.',
    '',
    markdownTable(rows),
    '',
    '## Details',
    '',
    ...rows.flatMap((r) => [`- **${r.name}** — ${r.detail}`, '']),
    NOTES_MARKER,
    '',
    notes,
    '',
  ].join('\n');
}

/** The README with its bench table replaced, or undefined when it has no markers. */
export function readmeWithTable(readme: string, rows: BenchResult[], meta: RunMeta): string | undefined {
  const i = readme.indexOf(README_START);
  const j = readme.indexOf(README_END);
  if (i < 0 || j < i) return undefined;
  const body = [`Latest full run: ${headline(meta)} Details and notes on each miss: [docs/bench.md](docs/bench.md).`, '', markdownTable(rows)].join('\n');
  return `${readme.slice(0, i + README_START.length)}\n${body}\n${readme.slice(j)}`;
}
