/**
 * `dtl-host train --backbone DIR --data ZIP_OR_DIR [--out FILE] [hyperparameters]` — trains one
 * adapter locally and writes it as a .safetensors file. The same code path as the service: the
 * ingestion engine (a zip or JSONL file in any accepted form, or a directory laid out as such a
 * zip), `trainAdapter` with the same hyperparameter schema, and the same `dtl` metadata as a
 * published version. Progress goes to stderr, a JSON summary to stdout. It trains on its own main
 * thread, unlike the server and `dtl-host worker` (a training thread per job): it has no HTTP,
 * heartbeat or SSE to keep answering, so a thread would only add its start-up and a second copy of
 * the backbone.
 */
import { rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { loadConfig } from '../config.js';
import { AppError, isAppError } from '../errors.js';
import { adapterSpecFor, hyperparametersSchema, type Hyperparameters, type HyperparametersInput } from '../train/hyperparameters.js';
import { loadBackboneArg } from './backbone-arg.js';
import { CommandExit, UsageError, type Command, type OptionSpec } from './command.js';
import { ProgressReporter } from './progress.js';

type FlagKind = 'int' | 'number' | 'numberOrAuto' | 'string' | 'blocks';

/** Every hyperparameter as a flag (a new schema key fails to compile until it is listed here). */
const HYPERPARAMETER_FLAGS: Record<keyof HyperparametersInput, { flag: string; kind: FlagKind; help: string }> = {
  epochs: { flag: 'epochs', kind: 'int', help: 'cosine epochs after the warm-up (default 20)' },
  warmupEpochs: { flag: 'warmup-epochs', kind: 'int', help: 'linear warm-up epochs (default 2)' },
  lr: { flag: 'lr', kind: 'numberOrAuto', help: "peak learning rate, or 'auto': searched on the validation split (default auto)" },
  minLr: { flag: 'min-lr', kind: 'number', help: 'learning rate at the end of the cosine (default 1e-8)' },
  weightDecay: { flag: 'weight-decay', kind: 'number', help: 'AdamW weight decay, none on biases (default 0.05)' },
  batchSize: { flag: 'batch-size', kind: 'int', help: 'images per step (default 32)' },
  rank: { flag: 'rank', kind: 'numberOrAuto', help: "CSN rank r, or 'auto': 2 at ViT-B's width 768, up to width/4 on narrower backbones (default auto)" },
  beta: { flag: 'beta', kind: 'number', help: 'Swish sharpness β (default 100)' },
  readBlocks: { flag: 'read-blocks', kind: 'blocks', help: "blocks the CSN reads: 'all' or a list like 0,1,2 (default all)" },
  addBlocks: { flag: 'add-blocks', kind: 'blocks', help: "blocks after which θ(h) is added: 'default' (second half) or a list" },
  variant: { flag: 'variant', kind: 'string', help: "dtl, dtl+ or 'auto': both searched (default auto)" },
  budget: { flag: 'budget', kind: 'string', help: 'recipe search width: fast, balanced or best (default balanced)' },
  kernel: { flag: 'kernel', kind: 'int', help: 'DTL+ depthwise kernel size (default 3)' },
  seed: { flag: 'seed', kind: 'int', help: 'seeds initialisation, split, batch order, augmentation (default 0)' },
  patience: { flag: 'patience', kind: 'int', help: 'early-stopping patience in epochs, 0 = never (default 5)' },
  valFraction: { flag: 'val-fraction', kind: 'number', help: 'share of each class held out when there is no val split (default 0.2)' },
  classWeights: { flag: 'class-weights', kind: 'string', help: 'balanced (inverse class frequency) or none (default balanced)' },
  augment: { flag: 'augment', kind: 'string', help: 'none or flip (default none)' },
  tapeBlocks: { flag: 'tape-blocks', kind: 'int', help: 'last blocks kept on the gradient tape, earlier ones recomputed (default depth/4)' },
};
const HP_KEYS = Object.keys(HYPERPARAMETER_FLAGS) as (keyof HyperparametersInput)[];

const OPTIONS: Record<string, OptionSpec> = {
  backbone: { type: 'string' },
  data: { type: 'string' },
  out: { type: 'string', short: 'o' },
  hparams: { type: 'string' },
  policy: { type: 'string' },
  'min-per-class': { type: 'string' },
  quiet: { type: 'boolean', short: 'q' },
  verbose: { type: 'boolean' },
  ...Object.fromEntries(HP_KEYS.map((k) => [HYPERPARAMETER_FLAGS[k].flag, { type: 'string' } as OptionSpec])),
};

const USAGE = [
  'usage: dtl-host train --backbone DIR --data ZIP_OR_DIR [--out FILE] [options] [hyperparameters]',
  '',
  '  --backbone DIR       backbone folder (model.safetensors + config.json, HF or timm layout), a ViT .npz,',
    '                       or hf:<org>/<name>[@revision] (blob store; pulled from HF_ENDPOINT if missing)',
  '  --data ZIP_OR_DIR    a data set zip (class folders, train/val/test splits or a labels.csv /',
  '                       labels.jsonl manifest), a JSONL file, or a directory laid out like the zip',
  '  --out FILE           adapter file to write (default adapter.safetensors)',
  "  --policy P           unusable files: 'skip' and report them (default) or 'reject' the data set",
  '  --min-per-class N    images a class needs (default 2)',
  '  --hparams JSON       hyperparameters as a JSON object; the flags below override its keys',
  '  --quiet, -q          no progress on stderr',
  '  --verbose            also log the TensorFlow.js backend',
  '',
  'hyperparameters (the service\'s schema and bounds):',
  ...HP_KEYS.map((k) => `  --${HYPERPARAMETER_FLAGS[k].flag.padEnd(15)} ${HYPERPARAMETER_FLAGS[k].help}`),
  '',
  'Progress (epoch, loss, train/val accuracy, lr, img/s, ETA) goes to stderr; a JSON summary',
  '(output file, labels, metrics) to stdout. Backend: TFJS_BACKEND; prefix cache: TRAIN_CACHE_BYTES.',
].join('\n');

function flagValue(kind: FlagKind, flag: string, raw: string): unknown {
  const number = (s: string) => {
    const n = s.trim() === '' ? NaN : Number(s);
    if (!Number.isFinite(n)) throw new UsageError(`--${flag} must be a number, got '${raw}'`);
    return n;
  };
  switch (kind) {
    case 'int':
    case 'number':
      return number(raw);
    case 'numberOrAuto':
      return raw === 'auto' ? raw : number(raw);
    case 'string':
      return raw;
    case 'blocks':
      return raw === 'all' || raw === 'default' ? raw : raw.split(',').map((s) => number(s));
  }
}

/** --hparams JSON, then the flags over it, validated by the service's schema → UsageError naming the flag. */
export function hyperparametersFromArgs(values: Record<string, string | boolean | undefined>): Hyperparameters {
  let input: Record<string, unknown> = {};
  if (typeof values.hparams === 'string') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(values.hparams);
    } catch (err) {
      throw new UsageError(`--hparams is not valid JSON: ${(err as Error).message}`);
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new UsageError('--hparams must be a JSON object');
    input = { ...(parsed as Record<string, unknown>) };
  }
  const fromFlag = new Set<string>();
  for (const key of HP_KEYS) {
    const { flag, kind } = HYPERPARAMETER_FLAGS[key];
    const raw = values[flag];
    if (typeof raw !== 'string') continue;
    input[key] = flagValue(kind, flag, raw);
    fromFlag.add(key);
  }
  const parsed = hyperparametersSchema.safeParse(input);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => {
      const key = String(i.path[0] ?? '');
      const where = fromFlag.has(key) ? `--${HYPERPARAMETER_FLAGS[key as keyof HyperparametersInput].flag}` : `--hparams ${i.path.join('.') || '(root)'}`;
      return `${where}: ${i.message}`;
    });
    throw new UsageError(`invalid hyperparameters: ${issues.join('; ')}`);
  }
  return parsed.data;
}

async function statOrNull(p: string) {
  return stat(p).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw new AppError('bad_request', `cannot read '${p}': ${err.message}`);
  });
}

export const trainCommand: Command = {
  name: 'train',
  summary: 'train an adapter locally from a data set zip or folder; writes .safetensors',
  usage: USAGE,
  options: OPTIONS,
  async run(values, positionals) {
    if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
    const backboneDir = values.backbone;
    const dataPath = values.data;
    if (typeof backboneDir !== 'string' || backboneDir === '') throw new UsageError('--backbone DIR is required');
    if (typeof dataPath !== 'string' || dataPath === '') throw new UsageError('--data ZIP_OR_DIR is required');
    const out = path.resolve(typeof values.out === 'string' && values.out !== '' ? values.out : 'adapter.safetensors');
    const policy = values.policy ?? 'skip';
    if (policy !== 'skip' && policy !== 'reject') throw new UsageError(`--policy must be 'skip' or 'reject', got '${String(policy)}'`);
    let minPerClass: number | undefined;
    if (values['min-per-class'] !== undefined) {
      minPerClass = Number(values['min-per-class']);
      if (!Number.isInteger(minPerClass) || minPerClass < 1) {
        throw new UsageError(`--min-per-class must be a positive integer, got '${String(values['min-per-class'])}'`);
      }
    }
    const h = hyperparametersFromArgs(values);

    // Missing inputs fail before anything slow starts.
    const data = await statOrNull(dataPath);
    if (data === null) throw new AppError('not_found', `data set '${dataPath}' not found`);
    const outDir = await statOrNull(path.dirname(out));
    if (outDir === null || !outDir.isDirectory()) throw new AppError('not_found', `output folder '${path.dirname(out)}' not found`);
    if ((await statOrNull(out))?.isDirectory()) throw new AppError('bad_request', `--out '${out}' is a directory`);

    const started = performance.now();
    const config = loadConfig();
    const progress = new ProgressReporter(process.stderr, { quiet: values.quiet === true });
    // Loaded only now, so usage errors and --help answer without starting TensorFlow.js.
    const { initBackend, saveAdapter } = await import('../model/index.js');
    const { ingestDirectory, ingestFile } = await import('../train/ingest/index.js');
    const { trainAdapter } = await import('../train/trainer.js');
    const { backboneIdentity, trainedAdapterMetadata } = await import('../train/publish.js');
    await initBackend(config.TFJS_BACKEND, values.verbose ? (m) => progress.note(m) : undefined);

    const backbone = await loadBackboneArg(backboneDir, config);
    // Ctrl-C stops cleanly between batches; a second one kills as usual.
    const abort = new AbortController();
    const onSigint = () => abort.abort(new CommandExit('interrupted; no adapter written', 130));
    process.once('SIGINT', onSigint);
    try {
      try {
        adapterSpecFor(h, backbone.config, ['a', 'b']);
      } catch (err) {
        // Block lists, rank or kernel that do not fit this backbone: a bad flag, as above.
        if (isAppError(err) && err.code === 'validation_failed') throw new UsageError(err.message);
        throw err;
      }
      progress.note(`reading data set ${dataPath}`);
      const common = {
        imageSize: backbone.config.imageSize,
        resample: backbone.config.resample,
        policy,
        limits: { maxImagePixels: config.IMAGE_MAX_PIXELS, ...(minPerClass === undefined ? {} : { minPerClass }) },
        signal: abort.signal,
      } as const;
      const ds = data.isDirectory() ? await ingestDirectory({ ...common, dir: dataPath }) : await ingestFile({ ...common, path: dataPath });
      for (const p of ds.problems.slice(0, 10)) progress.note(`skipped ${p.path}: ${p.message} (${p.code})`);
      if (ds.problemCount > 10) progress.note(`… and ${ds.problemCount - 10} more problems`);
      progress.note(
        `${ds.totals.total} images, ${ds.labels.length} classes (${ds.form}); training on ${backbone.identity} ` +
          `(${backbone.config.depth} blocks, width ${backbone.config.width})`,
      );

      const trained = await trainAdapter({
        backbone,
        dataset: ds.prepared,
        hyperparameters: h,
        cacheBytes: config.TRAIN_CACHE_BYTES,
        signal: abort.signal,
        onEpoch: (p) => progress.epoch(p),
        onSearch: (e) => progress.search(e),
      });
      progress.finish();
      let bytes: Buffer;
      try {
        bytes = saveAdapter(trained.adapter, trainedAdapterMetadata(backbone, trained.hyperparameters, trained.metrics));
      } finally {
        trained.adapter.dispose();
      }
      // Written beside the target and renamed: a reader never sees half a file.
      const tmp = `${out}.tmp-${process.pid}`;
      try {
        await writeFile(tmp, bytes);
        await rename(tmp, out);
      } catch (err) {
        await rm(tmp, { force: true });
        throw new AppError('bad_request', `cannot write '${out}': ${(err as Error).message}`, { cause: err });
      }
      const m = trained.metrics;
      const summary = {
        out,
        bytes: bytes.length,
        labels: ds.labels,
        backbone: backboneIdentity(backbone),
        data: { path: path.resolve(dataPath), form: ds.form, images: ds.totals, problems: ds.problemCount },
        hyperparameters: trained.hyperparameters,
        metrics: {
          search: m.search ?? null,
          accuracy: m.evaluation.accuracy,
          evaluatedOn: m.evaluation.split,
          valAccuracy: m.bestValAccuracy,
          testAccuracy: m.evaluation.split === 'test' ? m.evaluation.accuracy : null,
          macroF1: m.evaluation.macroF1,
          bestEpoch: m.bestEpoch,
          epochsRun: m.epochsRun,
          epochsPlanned: m.epochsPlanned,
          stoppedEarly: m.stoppedEarly,
          split: m.split,
          temperature: m.calibration.temperature,
          classWeights: m.classWeighting.weights,
          trainableParams: m.trainableParams,
          trainSeconds: m.trainSeconds,
          wallSeconds: (performance.now() - started) / 1000,
        },
      };
      if (m.split.valSource === 'none') progress.note('too few images to hold out a validation set: the accuracy below is on the training images');
      progress.note(`wrote ${out} (${m.evaluation.split} accuracy ${(m.evaluation.accuracy * 100).toFixed(1)}%, temperature ${m.calibration.temperature})`);
      process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
    } catch (err) {
      progress.finish();
      if (abort.signal.aborted) throw abort.signal.reason;
      throw err;
    } finally {
      process.off('SIGINT', onSigint);
      backbone.dispose();
    }
  },
};
