/**
 * npm run eval -- … answers "which method wins"; this answers "why does DTL do what it does" on
 * one task, using only the trainer's validation split of its training images (never the test
 * set): DTL variants (where the additions start, rank, β, learning rate, epochs) trained through
 * the service's trainer, against the linear probe on the same split and schedule.
 *
 *   node --import tsx eval/diagnose.ts --task fmnist-unseen [--epochs 12] [--only 0,3]
 */
import { parseArgs } from 'node:util';
import { initBackend, loadBackboneFromDir } from '../src/model/index.js';
import type { HyperparametersInput } from '../src/train/hyperparameters.js';
import { dtlMethod } from './methods/dtl.js';
import { linearProbe } from './methods/linear-probe.js';
import type { Method } from './methods/types.js';
import { DEFAULT_RECIPE, type Recipe } from './recipe.js';
import { taskFor } from './runner.js';
import { studyTask } from './study-task.js';
import { TASK_IDS, loadTaskData, type TaskId } from './tasks.js';

export interface Variant {
  name: string;
  method: Method;
  lrs: number[];
  epochs?: number;
}

function dtlVariant(name: string, h: HyperparametersInput, lrs: number[], epochs?: number): Variant {
  return { name, method: dtlMethod('dtl', h), lrs, epochs };
}

/** Around the rates the study's sweeps chose for DTL (0.01–0.1) and the linear probe (0.1–0.3). */
export const DIAGNOSE_LRS = [3e-3, 1e-2, 3e-2, 1e-1];

export function variants(depth: number): Variant[] {
  const lrs = DIAGNOSE_LRS;
  const out: Variant[] = [{ name: 'linear probe', method: linearProbe, lrs }];
  for (let first = 0; first < depth; first++) {
    out.push(dtlVariant(`DTL, adds after ${first}..${depth - 1}`, { addBlocks: Array.from({ length: depth - first }, (_, i) => first + i) }, lrs));
  }
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
      seed: { type: 'string', default: '0' },
    },
  });
  const task = a.task as TaskId;
  if (!(TASK_IDS as readonly string[]).includes(task)) throw new Error(`unknown task ${task}`);
  await initBackend('wasm');
  const backbone = await loadBackboneFromDir(a.backbone!);
  const seed = Number(a.seed);
  const recipe: Recipe = { ...DEFAULT_RECIPE, seed, epochs: a.epochs ? Number(a.epochs) : DEFAULT_RECIPE.epochs };
  // Same task images and split as the study.
  const t = taskFor(task, { sizes: { train: 1000, test: 10 }, seed }, await loadTaskData([task]));
  const only = a.only?.split(',');
  console.log(`| variant | ${DIAGNOSE_LRS.map((lr) => `lr ${lr}`).join(' | ')} | best val % |`);
  console.log(`|---|${DIAGNOSE_LRS.map(() => '---:').join('|')}|---:|`);
  for (const [i, v] of variants(backbone.config.depth).entries()) {
    if (only && !only.includes(String(i))) continue;
    const r = { ...recipe, epochs: recipe.epochs * (v.epochs ?? 1), warmupEpochs: recipe.warmupEpochs * (v.epochs ?? 1) };
    const st = studyTask(backbone, t, r);
    const accs: number[] = [];
    for (const lr of v.lrs) accs.push((await v.method.run(st, lr)).valAcc);
    console.log(`| ${v.name} | ${accs.map((x) => (x * 100).toFixed(1)).join(' | ')} | ${(Math.max(...accs) * 100).toFixed(1)} |`);
  }
  backbone.dispose();
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
