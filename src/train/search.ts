/**
 * The recipe search: which learning rates × variants a job tries (from `lr` / `variant` 'auto'
 * and `budget`), the order candidates are ranked in, and the record of it all that goes into the
 * version's metrics. The trainer runs the candidates together (one grouped step per batch, the
 * model's trainStep with groups) over the shared prefix cache and drops the weaker ones at the
 * rungs of halving.ts; the last one left continues its run and is the one published.
 *
 * Why a grid over lr × variant: the authors' lr 1e-3 is for ViT-B on ImageNet features; on small
 * real-image sets through the bundled backbone the good rates were 1e-2…1e-1 and DTL+ won clearly
 * (issue 13: digits 78.5 → 95.5), but neither holds for every data set or backbone.
 */
import type { BackboneConfig } from '../model/index.js';
import { halvingRungs, logGrid, type Rung } from './halving.js';
import { resolveRank, type Hyperparameters, type Recipe } from './hyperparameters.js';

export type Variant = Recipe['variant'];
export type Budget = Hyperparameters['budget'];

/** Per budget: the lr grid when lr is 'auto', and the halving schedule. */
export const BUDGETS: Record<Budget, { lrs: number[]; firstRung: number; eta: number }> = {
  // One point per decade, 8 candidates with both variants; the best 2 after 2 epochs, 1 after 4.
  fast: { lrs: [3e-4, 3e-3, 3e-2, 0.3], firstRung: 2, eta: 4 },
  // Two per decade, 14 candidates: 5 after 2 epochs, 2 after 4, 1 after 8.
  balanced: { lrs: [3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3], firstRung: 2, eta: 3 },
  // Four per decade, 26 candidates, halved every rung from 3 epochs on.
  best: { lrs: logGrid(3e-4, 0.3, 4), firstRung: 3, eta: 2 },
};

export interface SearchPlan {
  /** The candidates in grid order (lr major); one when nothing is 'auto'. */
  recipes: Recipe[];
  rungs: Rung[];
  grid: { lr: number[]; variant: Variant[] };
  /** Whether anything is searched at all. */
  searched: boolean;
}

/** The grid for these hyperparameters on this backbone: dtl+ only where its kernel fits the patch grid. */
export function planSearch(h: Hyperparameters, cfg: BackboneConfig, totalEpochs: number): SearchPlan {
  const b = BUDGETS[h.budget];
  // A floor above a candidate's peak would turn its cosine upside down: such rates are left out.
  const lrs = h.lr === 'auto' ? b.lrs.filter((lr) => lr >= h.minLr) : [h.lr];
  const variants: Variant[] = h.variant === 'auto' ? (h.kernel <= cfg.gridSize ? ['dtl', 'dtl+'] : ['dtl']) : [h.variant];
  const list = lrs; // never empty: the schema refuses minLr above AUTO_LR_MAX with lr 'auto'
  const rank = resolveRank(h, cfg);
  const recipes = list.flatMap((lr) => variants.map((variant) => ({ ...h, lr, variant, rank })));
  return {
    recipes,
    rungs: recipes.length > 1 ? halvingRungs(recipes.length, totalEpochs, b.firstRung, b.eta) : [],
    grid: { lr: list, variant: variants },
    searched: recipes.length > 1,
  };
}

export interface CandidateScore {
  index: number;
  valAccuracy: number;
  valLoss: number;
}

/** Best first: validation accuracy, then lower validation loss, then grid order (deterministic). */
export function rankCandidates<T extends CandidateScore>(scores: T[]): T[] {
  return [...scores].sort((a, b) => b.valAccuracy - a.valAccuracy || a.valLoss - b.valLoss || a.index - b.index);
}

/** One candidate in the search record and events. */
export interface CandidateRecord {
  lr: number;
  variant: Variant;
  /** Its best epoch's validation accuracy and loss so far. */
  valAccuracy: number;
  valLoss: number;
  bestEpoch: number;
  epochsRun: number;
  /** 1-based rung that dropped it; null = it won. */
  droppedAtRung: number | null;
}

/** Job events of the search (SSE `search`), in order: start, then per rung its candidates, then chosen. */
export type SearchEvent =
  | { stage: 'start'; budget: Budget; grid: SearchPlan['grid']; candidates: number; rungs: Rung[] }
  | { stage: 'candidate'; rung: number; epoch: number; kept: boolean; candidate: CandidateRecord }
  | { stage: 'rung'; rung: number; epoch: number; kept: number; dropped: number; seconds: number }
  | { stage: 'chosen'; lr: number; variant: Variant; valAccuracy: number; epoch: number; seconds: number };

/** What the version's metrics keep of the search (`metrics.search`). */
export interface SearchRecord {
  budget: Budget;
  grid: SearchPlan['grid'];
  rungs: Rung[];
  candidates: CandidateRecord[];
  chosen: { lr: number; variant: Variant };
  /** Until the last rung's decision (every candidate's steps included). */
  searchSeconds: number;
  /** The winner continued its own run from the last rung (it is not retrained from scratch). */
  winner: 'continued';
}
