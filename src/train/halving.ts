/**
 * The successive-halving schedule of the recipe search, as plain arithmetic (no tensors): every
 * candidate trains until the first rung, the best 1/η go on to the next rung (twice as many epochs
 * in), and so on until one is left; that one simply continues to the end of its schedule. So the
 * search costs the first rung's epochs for every candidate plus a shrinking tail, not a full run
 * per candidate.
 */

export interface Rung {
  /** Epochs trained (counted from the start of the run) when this rung decides. */
  until: number;
  /** Candidates that go on after it. */
  keep: number;
}

/**
 * Rungs for `candidates` over a run of `totalEpochs`: decisions after firstRung, 2·firstRung,
 * 4·firstRung, … epochs, keeping ⌈n/η⌉ each time; a rung that would reach the end of the run
 * decides the winner there. One candidate → no rungs.
 */
export function halvingRungs(candidates: number, totalEpochs: number, firstRung: number, eta: number): Rung[] {
  if (!Number.isInteger(candidates) || candidates < 1) throw new RangeError('candidates must be a positive integer');
  if (!(eta > 1)) throw new RangeError('eta must exceed 1');
  const rungs: Rung[] = [];
  let n = candidates;
  let until = Math.max(1, Math.floor(firstRung));
  while (n > 1) {
    if (until >= totalEpochs) {
      rungs.push({ until: totalEpochs, keep: 1 });
      break;
    }
    n = Math.max(1, Math.ceil(n / eta));
    rungs.push({ until, keep: n });
    until *= 2;
  }
  return rungs;
}

/** Candidate-epochs the schedule trains (the unit a single run costs `totalEpochs` of). */
export function candidateEpochs(candidates: number, totalEpochs: number, rungs: Rung[]): number {
  let n = candidates;
  let from = 0;
  let sum = 0;
  for (const r of rungs) {
    sum += n * (r.until - from);
    from = r.until;
    n = r.keep;
  }
  return sum + n * (totalEpochs - from);
}

/** Log-spaced grid from `lo` to `hi` with `perDecade` points per decade (rounded to 2 significant digits). */
export function logGrid(lo: number, hi: number, perDecade: number): number[] {
  const steps = Math.round(Math.log10(hi / lo) * perDecade);
  return Array.from({ length: steps + 1 }, (_, i) => Number((lo * 10 ** (i / perDecade)).toPrecision(2)));
}
