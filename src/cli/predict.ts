/**
 * `dtl-host predict --backbone DIR --adapter FILE [--top K] IMAGE...` — classifies images with one
 * adapter through the real path (decode, preprocess, prefix + suffix forward) and prints a JSON
 * array with one object per image.
 */
import { readFile } from 'node:fs/promises';
import { engineOptions, loadConfig } from '../config.js';
import { AppError } from '../errors.js';
import { loadBackboneArg } from './backbone-arg.js';
import { UsageError, type Command } from './command.js';

/** Images per forward batch: bounds memory for long argument lists. */
const BATCH = 16;

export interface Prediction {
  image: string;
  labels: string[];
  logits: number[];
  probabilities: number[];
  top: Array<{ label: string; probability: number }>;
}

/** softmax(logits / temperature); the adapter file's calibrated temperature, 1 when it has none. */
export function softmax(logits: number[], temperature = 1): number[] {
  const scaled = logits.map((l) => l / temperature);
  const max = Math.max(...scaled);
  const exps = scaled.map((l) => Math.exp(l - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / sum);
}

async function readInput(file: string, what: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new AppError('not_found', `${what} '${file}' not found`);
    throw new AppError('bad_request', `cannot read ${what} '${file}': ${(err as Error).message}`);
  }
}

export const predictCommand: Command = {
  name: 'predict',
  summary: 'classify images with one adapter; prints JSON',
  usage: [
    'usage: dtl-host predict --backbone DIR --adapter FILE [--top K] [--verbose] IMAGE...',
    '',
    '  --backbone DIR   backbone folder (model.safetensors + config.json, HF or timm layout), a ViT .npz,',
    '                   or hf:<org>/<name>[@revision] (blob store; pulled from HF_ENDPOINT if missing)',
    '  --adapter FILE   adapter .safetensors file',
    '  --top K          entries in "top" (default 5, at most the number of labels)',
    '  --verbose        log the TensorFlow.js backend on stderr',
    '',
    'Backend: TFJS_BACKEND=auto|tensorflow|wasm|cpu (default auto).',
  ].join('\n'),
  options: {
    backbone: { type: 'string' },
    adapter: { type: 'string' },
    top: { type: 'string' },
    verbose: { type: 'boolean' },
  },
  async run(values, images) {
    const backboneDir = values.backbone;
    const adapterFile = values.adapter;
    if (typeof backboneDir !== 'string' || backboneDir === '') throw new UsageError('--backbone DIR is required');
    if (typeof adapterFile !== 'string' || adapterFile === '') throw new UsageError('--adapter FILE is required');
    if (images.length === 0) throw new UsageError('give at least one IMAGE');
    let top = 5;
    if (values.top !== undefined) {
      top = Number(values.top);
      if (!Number.isInteger(top) || top < 1) throw new UsageError(`--top must be a positive integer, got '${String(values.top)}'`);
    }
    const config = loadConfig();
    // Loaded only now, so usage errors and --help answer without starting TensorFlow.js.
    const { detachNative, enginePredict, initBackend, loadAdapter, preprocessImage, settleBackboneWeights, startBackboneEngine } = await import('../model/index.js');
    const note = values.verbose ? (m: string) => process.stderr.write(`${m}\n`) : undefined;
    await initBackend(config.TFJS_BACKEND, note);

    const backbone = await loadBackboneArg(backboneDir, config, { deferResidency: true });
    try {
      const engine = await startBackboneEngine(backbone, config.BACKBONE_ENGINE, engineOptions(config), note);
      settleBackboneWeights(backbone, engine === 'onnxruntime' ? 'native' : 'tfjs');
    } catch (err) {
      backbone.dispose();
      throw err;
    }
    const { adapter } = loadAdapter(await readInput(adapterFile, 'adapter file'), backbone.config);
    const labels = adapter.spec.labels;
    const results: Prediction[] = [];
    try {
      for (let start = 0; start < images.length; start += BATCH) {
        const names = images.slice(start, start + BATCH);
        const pixels = await Promise.all(
          names.map(async (name) => {
            const bytes = await readInput(name, 'image');
            try {
              return await preprocessImage(bytes, backbone.config, { maxPixels: config.IMAGE_MAX_PIXELS });
            } catch (err) {
              if (err instanceof AppError) throw new AppError(err.code, `${name}: ${err.message}`);
              throw err;
            }
          }),
        );
        const logits = await enginePredict(backbone, adapter, pixels);
        const values2d = logits.arraySync();
        logits.dispose();
        names.forEach((image, i) => {
          const logits = values2d[i];
          const probabilities = softmax(logits, adapter.temperature);
          const order = probabilities.map((p, j) => [p, j] as const).sort((a, b) => b[0] - a[0]);
          results.push({
            image,
            labels,
            logits,
            probabilities,
            top: order.slice(0, Math.min(top, labels.length)).map(([probability, j]) => ({ label: labels[j], probability })),
          });
        });
      }
    } finally {
      adapter.dispose();
      await detachNative(backbone);
      backbone.dispose();
    }
    process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
  },
};
