/** Small measuring helpers shared by the benchmarks. */
import { performance } from 'node:perf_hooks';
import type { BenchResult } from './types.js';

export type GoalOp = '>=' | '<=';

export function result(name: string, value: number, goal: { op: GoalOp; value: number } | null, detail: string): BenchResult {
  const pass = goal === null ? null : goal.op === '>=' ? value >= goal.value : value <= goal.value;
  return { name, value: round(value), goal: goal === null ? '' : `${goal.op} ${goal.value}`, pass, detail };
}

export function round(x: number, digits = 4): number {
  if (!Number.isFinite(x)) return x;
  const m = 10 ** Math.max(0, digits - Math.ceil(Math.log10(Math.abs(x) + 1e-12)));
  return Math.round(x * m) / m;
}

export function median(xs: number[]): number {
  return percentile(xs, 0.5);
}

/** Nearest-rank percentile (p in 0..1). */
export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))];
}

/** Process CPU time (user + system) in ms: every thread of this process, GC included. */
export function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

export interface Timed<T> {
  value: T;
  wallMs: number;
  cpuMs: number;
}

/** Wall and CPU time of an async function. */
export async function timed<T>(fn: () => Promise<T> | T): Promise<Timed<T>> {
  const c0 = cpuMs();
  const w0 = performance.now();
  const value = await fn();
  return { value, wallMs: performance.now() - w0, cpuMs: cpuMs() - c0 };
}

export const fmt = (x: number, digits = 3) => (Number.isFinite(x) ? x.toPrecision(digits) : String(x));
