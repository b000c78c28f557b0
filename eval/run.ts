/**
 * npm run eval [-- --quick] [--tasks a,b] [--methods pixel,linear,service,http,dtl,…] [--epochs N] [--backbone DIR] [--jobs N]
 * npm run eval -- --report-from a/eval.json,b/eval.json [--notes eval/findings.md] [--out docs]   (a later file's row replaces an earlier one's)
 *
 * The VTAB-1k-style transfer study of the bundled backbone; writes docs/eval.md, docs/eval.svg
 * and docs/eval.json (with --quick: under .tmp/eval-quick/ unless --out is given). DTL, DTL+ and
 * "service defaults" train through src/train's trainer; the data it reads comes from Debian
 * packages (README, Development). --seed (default 0, the trainer's) seeds the task images and
 * every method but the service defaults row, which always passes no hyperparameters.
 *
 * --methods http adds "Service over HTTP (defaults)" (not run by default: it repeats the service
 * defaults' training): the real service started on --backbone in its own process, the training
 * images uploaded as a zip of PNG class folders, trained with no hyperparameters, every test
 * image classified over HTTP (eval/methods/http.ts). Run it with `service` to compare the two.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { AppError } from '../src/errors.js';
import { initBackend, loadBackboneFromDir } from '../src/model/index.js';
import { dtl, dtlPlus, serviceDefaults } from './methods/dtl.js';
import { fullFinetune } from './methods/full-finetune.js';
import { linearProbe } from './methods/linear-probe.js';
import { lora } from './methods/lora.js';
import { serviceOverHttp } from './methods/http.js';
import { pixelLogReg } from './methods/pixel-lr.js';
import { DEFAULT_METHOD_IDS, METHOD_IDS, type Method, type MethodId } from './methods/types.js';
import { DEFAULT_RECIPE, type Recipe } from './recipe.js';
import { evalMarkdown, evalSvg, type ReportContext } from './report.js';
import { completeTasks, inTaskOrder, latestResults, runInChildren, taskGroups } from './parallel.js';
import { runStudy, type MethodResult } from './runner.js';
import { TASK_IDS, loadTaskData, type TaskId } from './tasks.js';

export const DEFAULT_TASKS: TaskId[] = [...TASK_IDS];
/** Batch of the one-step memory measurement, the authors' training batch. */
const MEMORY_BATCH = 32;

const { values: a } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    tasks: { type: 'string' },
    methods: { type: 'string' },
    epochs: { type: 'string' },
    train: { type: 'string' },
    test: { type: 'string' },
    'no-sweep': { type: 'boolean', default: false },
    backbone: { type: 'string', default: 'backbones/default' },
    'data-dir': { type: 'string' },
    out: { type: 'string' },
    notes: { type: 'string' },
    seed: { type: 'string', default: '0' },
    jobs: { type: 'string', default: '1' },
    'report-from': { type: 'string' },
  },
  strict: true,
});

function list<T extends string>(value: string | undefined, allowed: readonly T[], fallback: readonly T[], what: string): T[] {
  if (!value) return [...fallback];
  const items = value.split(',').map((s) => s.trim()).filter(Boolean);
  const bad = items.find((s) => !(allowed as readonly string[]).includes(s));
  if (bad) throw new AppError('validation_failed', `unknown ${what} '${bad}' (one of ${allowed.join(', ')})`);
  return items as T[];
}

const int = (v: string | undefined, fallback: number, what: string) => {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new AppError('validation_failed', `--${what} must be a positive integer`);
  return n;
};

/**
 * Re-renders eval.md/eval.svg from saved eval.json files (comma-separated: e.g. the per-job files
 * of a run that was stopped early) without re-running the study; the report keeps the commands
 * that produced the numbers. Tasks missing a method that others have are left out (a job stopped
 * mid-task), and said so.
 */
async function renderFrom(files: string[]): Promise<void> {
  const saved = await Promise.all(
    files.map(async (f) => JSON.parse(await readFile(f, 'utf8')) as { context: ReportContext; sizes: { train: number }; results: MethodResult[] }),
  );
  const outDir = a.out ?? path.dirname(files[0]);
  const render = `npm run eval -- ${process.argv.slice(2).join(' ')}`.trim();
  const notes = a.notes ? await readFile(a.notes, 'utf8') : undefined;
  const { results: latest, replaced } = latestResults(saved.map((x) => x.results));
  if (replaced.length) console.log(`replaced by a later file: ${replaced.join(', ')}`);
  const { kept, dropped } = completeTasks(latest);
  if (dropped.length) console.log(`left out unfinished task(s): ${dropped.join(', ')}`);
  const commands = [...new Set(saved.map((x) => x.context.command))].join('\n');
  const code = [...new Set(saved.map((x) => x.context.code).filter(Boolean))].join(' and ') || undefined;
  const ctx: ReportContext = { ...saved[0].context, code, command: `${commands}\n# report re-rendered (numbers unchanged) with:\n${render}`, notes };
  const results = inTaskOrder(kept, TASK_IDS);
  await mkdir(outDir, { recursive: true });
  await writeFile(path.join(outDir, 'eval.json'), `${JSON.stringify({ context: { ...ctx, notes: undefined }, sizes: saved[0].sizes, results }, null, 2)}\n`);
  await writeFile(path.join(outDir, 'eval.md'), evalMarkdown(results, ctx));
  await writeFile(path.join(outDir, 'eval.svg'), evalSvg(results, `Transfer from the bundled ViT (${saved[0].sizes.train} training images per task)`, MEMORY_BATCH));
  console.log(`wrote ${outDir}/eval.md, eval.svg, eval.json from ${files.join(', ')}`);
}

/** The commit the numbers come from; model-core kernels change memory and speed figures. */
function gitCommit(): string | undefined {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src', 'eval', 'scripts', 'backbones'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    return dirty ? `${head}-dirty` : head;
  } catch {
    return undefined;
  }
}

async function main(): Promise<void> {
  if (a['report-from']) return renderFrom(a['report-from'].split(',').filter(Boolean));
  const quick = a.quick === true;
  const tasks = list(a.tasks, TASK_IDS, DEFAULT_TASKS, 'task');
  const all: Record<MethodId, Method> = { pixel: pixelLogReg, linear: linearProbe, service: serviceDefaults, http: serviceOverHttp(a.backbone!), dtl, 'dtl+': dtlPlus, lora, full: fullFinetune };
  const methods = list(a.methods, METHOD_IDS, DEFAULT_METHOD_IDS, 'method').map((m) => all[m]);
  // The service's defaults; --epochs / --quick shorten every method but the service defaults row.
  const recipe: Recipe = { ...DEFAULT_RECIPE, epochs: int(a.epochs, quick ? 2 : DEFAULT_RECIPE.epochs, 'epochs') };
  if (a.seed !== '0') recipe.seed = int(a.seed, 0, 'seed');
  if (quick) recipe.warmupEpochs = 0;
  const sizes = { train: int(a.train, quick ? 96 : 1000, 'train'), test: int(a.test, quick ? 96 : 2000, 'test') };
  const outDir = a.out ?? (quick ? '.tmp/eval-quick' : 'docs');
  const backend = await initBackend('wasm');
  const backbone = await loadBackboneFromDir(a.backbone!);
  const command = `npm run eval -- ${process.argv.slice(2).join(' ')}`.trim().replace(/ --$/, '');
  console.log(`tfjs ${backend}; backbone ${a.backbone} (${backbone.config.width}×${backbone.config.depth}, ${backbone.config.imageSize}px/${backbone.config.patchSize})`);
  const c = backbone.config;
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  const ctx = {
    command,
    date: new Date().toISOString().slice(0, 10),
    machine: `${cpu}, ${os.cpus().length} vCPU, Node ${process.version}, TensorFlow.js ${backend} (1 thread)`,
    code: gitCommit(),
    backbone: `\`${a.backbone}\` — ViT width ${c.width}, depth ${c.depth}, ${c.heads} heads, MLP ${c.mlpDim}, ${c.imageSize}px input, ${c.patchSize}px patches (see its TRAINING.md)`,
    recipe:
      `The service trainer's defaults (src/train/hyperparameters.ts) for every method: AdamW (weight decay ${recipe.weightDecay}, none on biases), ` +
      `batch ${recipe.batchSize}, ${recipe.warmupEpochs} warm-up epoch(s) then ${recipe.epochs} cosine epochs to ${recipe.minLr} (per epoch, ` +
      `src/train/schedule.ts), the trainer's seeded batch order, no augmentation, seed ${recipe.seed}. Every method trains on the trainer's own ` +
      `split of the ${sizes.train} training images (a stratified 80 % to train, 20 % to validate, planSplits) and the learning rate is the best ` +
      `validation accuracy over the method's grid (extended by up to two half-decade steps when the best sat on an edge); the test set is used ` +
      `once, for the reported run. **DTL, DTL+ and "service defaults" run through the service's trainer** (\`trainAdapter\`, as the train job ` +
      `calls it: the task as a prepared data set with its test images as the 'test' split, the default prefix cache), so they also keep the best ` +
      `epoch on validation and stop early (patience 5); DTL/DTL+ get only \`lr\` and \`variant\`${recipe.seed !== 0 ? ' and the seed' : ''}, ` +
      `"service defaults" gets an empty hyperparameter object — what a tenant who sets nothing gets (its seed is the default, 0). DTL/DTL+: rank 2, ` +
      `β = 100, reads before every block, additions after blocks ${Math.floor(c.depth / 2)}..${c.depth - 1} (the service's defaults). The baselines ` +
      `use the same schedule, seeds and split but their own loops and the last epoch: LoRA rank 4, α = 4 on the query and value projections of ` +
      `every block; linear probe: head on the frozen pooled feature; full fine-tune: every weight; pixel logistic regression: multinomial ` +
      `logistic regression on the raw grey values (no backbone).` +
      (methods.some((m) => m.id === 'http')
        ? ' **"Service over HTTP (defaults)"** is the service itself (`src/server.ts` in its own process, default configuration, a fresh ' +
          'PGlite + disk data directory, the same backbone folder): the training images go up as PNG files in a zip of class folders, ' +
          'train with `"hyperparameters": {}`, and every test image is classified over HTTP; its val accuracy is the published ' +
          "version's metrics', its train time the job's (started → finished)."
        : ''),
    notes: a.notes ? await readFile(a.notes, 'utf8') : undefined,
  };
  await mkdir(outDir, { recursive: true });
  const write = async (results: MethodResult[]) => {
    await writeFile(path.join(outDir, 'eval.json'), `${JSON.stringify({ context: { ...ctx, notes: undefined }, recipe, sizes, results }, null, 2)}\n`);
    await writeFile(path.join(outDir, 'eval.md'), evalMarkdown(results, ctx));
    await writeFile(path.join(outDir, 'eval.svg'), evalSvg(results, `Transfer from the bundled ViT (${sizes.train} training images per task)`, MEMORY_BATCH));
  };
  try {
    const jobs = int(a.jobs, 1, 'jobs');
    const groups = taskGroups(tasks, jobs);
    if (groups.length > 1) {
      console.log(`running ${groups.length} jobs: ${groups.map((g) => g.join('+')).join(' | ')}`);
      const merged = await runInChildren(groups, tasks, process.argv.slice(2), path.join('.tmp', 'eval-jobs'), (l) => console.log(l));
      await write(merged);
      console.log(`wrote ${outDir}/eval.md, eval.svg, eval.json`);
      return;
    }
    const data = await loadTaskData(tasks, a['data-dir']);
    const results = await runStudy(backbone, {
      tasks,
      methods,
      sizes,
      recipe,
      memoryBatch: MEMORY_BATCH,
      noSweep: quick || a['no-sweep'] === true,
      seed: recipe.seed,
      log: (l) => console.log(l),
      onProgress: write,
    }, data);
    await write(results);
    console.log(`wrote ${outDir}/eval.md, eval.svg, eval.json`);
  } finally {
    backbone.dispose();
  }
}

main().catch((err) => {
  console.error(err instanceof AppError ? `${err.code}: ${err.message}` : err);
  process.exitCode = 1;
});
