/**
 * npm run eval -- … answers "which method wins"; this answers "why does DTL do what it does" on
 * one task, using only the validation split of its 1,000 training images (never the test set):
 * DTL variants (where the additions start, rank, β, learning rate, epochs) against the linear
 * probe under the same recipe.
 *
 *   node --import tsx eval/diagnose.ts --task fmnist-unseen [--epochs 12] [--variants a,b]
 */
import { parseArgs } from 'node:util';
import { initBackend, loadBackboneFromDir } from '../src/model/index.js';
import { dtlMethod, type DtlOptions } from './methods/dtl.js';
import { linearProbe } from './methods/linear-probe.js';
import type { Method } from './methods/types.js';
import { DEFAULT_RECIPE, accuracyOf, type Recipe } from './recipe.js';
import { TASK_IDS, buildTask, loadTaskData, stratifiedSplit, type TaskId } from './tasks.js';

export interface Variant {
  name: string;
  method: Method;
  lrs: number[];
  epochs?: number;
}

function dtlVariant(name: string, o: Partial<DtlOptions>, lrs: number[], epochs?: number): Variant {
  return { name, method: dtlMethod({ rank: 2, beta: 100, kernel: 0, ...o }, 'dtl'), lrs, epochs };
}

/** Around the rates the study's sweeps chose for DTL (0.01–0.03) and the linear probe (0.1–0.3). */
export const DIAGNOSE_LRS = [3e-3, 1e-2, 3e-2, 1e-1];

export function variants(depth: number): Variant[] {
  const lrs = DIAGNOSE_LRS;
  const out: Variant[] = [{ name: 'linear probe', method: linearProbe, lrs }];
  for (let first = 0; first < depth; first++) out.push(dtlVariant(`DTL, adds after ${first}..${depth - 1}`, { firstAdd: first }, lrs));
  out.push(dtlVariant('DTL, rank 8', { rank: 8 }, lrs));
  out.push(dtlVariant('DTL, β = 1', { beta: 1 }, lrs));
  out.push({ name: 'linear probe, 3× epochs', method: linearProbe, lrs, epochs: 3 });
  out.push(dtlVariant('DTL, 3× epochs', {}, lrs, 3));
  return out;
}

async function main(): Promise<void> {
  const { values: a } = parseArgs({
    options: {
      task: { type: 'string', default: 'fmnist-unseen' },
      epochs: { type: 'string' },
      backbone: { type: 'string', default: 'backbones/default' },
      only: { type: 'string' },
      seed: { type: 'string', default: '7' },
    },
  });
  const task = a.task as TaskId;
  if (!(TASK_IDS as readonly string[]).includes(task)) throw new Error(`unknown task ${task}`);
  await initBackend('wasm');
  const backbone = await loadBackboneFromDir(a.backbone!);
  const seed = Number(a.seed);
  const recipe: Recipe = { ...DEFAULT_RECIPE, seed, epochs: a.epochs ? Number(a.epochs) : DEFAULT_RECIPE.epochs };
  const data = await loadTaskData([task]);
  // Same task images and split as the study (runner.ts seeds a task by its position in TASK_IDS).
  const t = buildTask(task, { train: 1000, test: 10 }, seed + 1000 * (TASK_IDS.indexOf(task) + 1), data);
  const split = stratifiedSplit(t.train.labels, 0.2, seed);
  const only = a.only?.split(',');
  console.log(`| variant | ${DIAGNOSE_LRS.map((lr) => `lr ${lr}`).join(' | ')} | best val % |`);
  console.log(`|---|${DIAGNOSE_LRS.map(() => '---:').join('|')}|---:|`);
  for (const [i, v] of variants(backbone.config.depth).entries()) {
    if (only && !only.includes(String(i))) continue;
    const r = { ...recipe, epochs: recipe.epochs * (v.epochs ?? 1), warmupEpochs: recipe.warmupEpochs * (v.epochs ?? 1) };
    const accs = v.lrs.map((lr) => {
      const fitted = v.method.fit({ backbone, set: t.train, rows: split.train, classes: t.labels.length, lr, recipe: r });
      try {
        return accuracyOf(fitted.predict(t.train, split.val), t.train, split.val);
      } finally {
        fitted.dispose();
      }
    });
    console.log(`| ${v.name} | ${accs.map((x) => (x * 100).toFixed(1)).join(' | ')} | ${(Math.max(...accs) * 100).toFixed(1)} |`);
  }
  backbone.dispose();
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
