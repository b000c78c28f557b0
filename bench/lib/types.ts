/** The contract between `npm run bench` and each benchmark file in bench/benches/. */

/** One row of the table and of bench/results.json. */
export interface BenchResult {
  /** Stable id + what is measured, e.g. "P1 mixed-stream throughput ÷ single-adapter". */
  name: string;
  value: number;
  /** Human-readable goal, e.g. ">= 0.95"; "" for figures reported without a goal. */
  goal: string;
  /** null when there is no goal. */
  pass: boolean | null;
  /** Sizes, raw measurements and method, enough to reproduce and judge the number. */
  detail: string;
}

export interface BenchContext {
  /** --quick: CI-sized run (the whole suite under a minute on a 2-core machine). */
  quick: boolean;
  /** Progress lines (stderr), never part of the results. */
  log: (msg: string) => void;
}

/**
 * A benchmark file default-exports one of these. `npm run bench` runs every file in
 * bench/benches/ in its own child process (a fresh wasm heap and no cross-talk between benches),
 * in file-name order, and collects the results.
 */
export interface Bench {
  /** Short id(s) used by --only, e.g. "P1". */
  id: string;
  title: string;
  run(ctx: BenchContext): Promise<BenchResult[]>;
}
