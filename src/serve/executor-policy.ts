/**
 * Which executor runs a batch: pure policy (no clock, no I/O), like scheduler-policy.ts.
 *
 * Only an idle executor is chosen (one batch per executor at a time: a batch is CPU-bound, two on
 * one thread would only contend). Among idle ones, the executor that already holds the most of the
 * batch's adapters wins — a cold adapter costs a blob read and a load, and loading it into a second
 * executor doubles its memory — then one that is ready over one (re)starting, then the one idle
 * longest (spreads load, and keeps every executor's caches warm).
 */

export interface ExecutorView {
  readonly busy: boolean;
  /** Started and not restarting. */
  readonly ready: boolean;
  /** When it last finished (or started idling); smaller = idle longer. */
  readonly idleSince: number;
  readonly isResident: (key: string) => boolean;
}

/** Index of the executor to run a batch naming `keys` (distinct adapter-version ids), or undefined when none is idle. */
export function pickExecutor(executors: readonly ExecutorView[], keys: readonly string[]): number | undefined {
  let best: number | undefined;
  let bestScore: [number, number, number] | undefined;
  executors.forEach((e, i) => {
    if (e.busy) return;
    const resident = keys.reduce((a, k) => a + (e.isResident(k) ? 1 : 0), 0);
    const score: [number, number, number] = [resident, e.ready ? 1 : 0, -e.idleSince];
    if (bestScore === undefined || better(score, bestScore)) {
      best = i;
      bestScore = score;
    }
  });
  return best;
}

function better(a: readonly number[], b: readonly number[]): boolean {
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) return a[i] > b[i];
  }
  return false;
}
