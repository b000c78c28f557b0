/**
 * `--jobs N`: the wasm backend runs one thread, so on an N-core machine the tasks go to N child
 * processes (the same eval/run.ts, each with its share of the tasks and its own output folder)
 * and the parent merges their eval.json results in task order.
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AppError } from '../src/errors.js';
import type { MethodResult } from './runner.js';
import type { TaskId } from './tasks.js';

/** Round-robin split of the tasks over at most `jobs` groups (no empty group). */
export function taskGroups(tasks: readonly TaskId[], jobs: number): TaskId[][] {
  const groups: TaskId[][] = Array.from({ length: Math.min(jobs, tasks.length) }, () => []);
  tasks.forEach((t, i) => groups[i % groups.length].push(t));
  return groups;
}

/** Drops the options the parent sets itself for each child. */
export function childArgs(argv: readonly string[]): string[] {
  const own = new Set(['--tasks', '--out', '--jobs', '--notes']);
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const [name] = argv[i].split('=');
    if (own.has(name)) {
      if (!argv[i].includes('=')) i++;
      continue;
    }
    out.push(argv[i]);
  }
  return out;
}

/** Results sorted by the order the tasks were asked for (stable within a task). */
export function inTaskOrder(results: MethodResult[], order: readonly TaskId[]): MethodResult[] {
  return [...results].sort((a, b) => order.indexOf(a.task) - order.indexOf(b.task));
}

/** Splits results into tasks that have every method seen anywhere, and the task ids that do not. */
/** One result per (task, method): a later file's result replaces an earlier one (a re-run of some rows). */
export function latestResults(files: MethodResult[][]): { results: MethodResult[]; replaced: string[] } {
  const byKey = new Map<string, MethodResult>();
  const replaced: string[] = [];
  for (const r of files.flat()) {
    const key = `${r.task}/${r.method}`;
    if (byKey.has(key)) replaced.push(key);
    byKey.set(key, r);
  }
  return { results: [...byKey.values()], replaced };
}

export function completeTasks(results: MethodResult[]): { kept: MethodResult[]; dropped: TaskId[] } {
  const methods = new Set(results.map((r) => r.method));
  const tasks = [...new Set(results.map((r) => r.task))];
  const dropped = tasks.filter((t) => results.filter((r) => r.task === t).length < methods.size);
  return { kept: results.filter((r) => !dropped.includes(r.task)), dropped };
}

export async function runInChildren(
  groups: TaskId[][],
  order: readonly TaskId[],
  argv: readonly string[],
  workDir: string,
  log: (line: string) => void,
): Promise<MethodResult[]> {
  const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'run.ts');
  const base = childArgs(argv);
  const runs = groups.map((g, k) => {
    const out = path.join(workDir, `job-${k}`);
    const args = [...process.execArgv, script, ...base, '--tasks', g.join(','), '--out', out, '--jobs', '1'];
    return new Promise<string>((resolve, reject) => {
      const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      const prefix = `[job ${k}: ${g.join(',')}] `;
      const forward = (chunk: Buffer) => {
        for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) log(prefix + line);
      };
      child.stdout.on('data', forward);
      child.stderr.on('data', forward);
      child.on('error', reject);
      child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new AppError('internal', `${prefix}exited with ${code}`))));
    });
  });
  const dirs = await Promise.all(runs);
  const parts = await Promise.all(dirs.map(async (d) => JSON.parse(await readFile(path.join(d, 'eval.json'), 'utf8')).results as MethodResult[]));
  return inTaskOrder(parts.flat(), order);
}
