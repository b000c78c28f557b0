/**
 * npm run pretrain [-- --epochs N --out DIR --quick …]   (--quick: 640 images, 1 epoch, into .tmp/pretrain-quick)
 *
 * Trains the default backbone from scratch on six Fashion-MNIST classes (data from the Debian
 * package `dataset-fashion-mnist`) and writes it, with TRAINING.md, in the Hugging Face ViT layout.
 * See backbones/default/TRAINING.md for the run that produced the committed weights.
 */
import { parseArgs } from 'node:util';
import { AppError } from '../src/errors.js';
import { initBackend } from '../src/model/index.js';
import { runPretrain, type RunOptions } from './pretrain/run.js';

const { values: a } = parseArgs({
  options: {
    out: { type: 'string' },
    'data-dir': { type: 'string' },
    epochs: { type: 'string', default: '3' },
    batch: { type: 'string', default: '64' },
    lr: { type: 'string', default: '1e-3' },
    'min-lr': { type: 'string', default: '1e-5' },
    warmup: { type: 'string', default: '0.3' },
    wd: { type: 'string', default: '0.05' },
    smoothing: { type: 'string', default: '0.1' },
    width: { type: 'string', default: '64' },
    depth: { type: 'string', default: '6' },
    heads: { type: 'string', default: '4' },
    mlp: { type: 'string', default: '256' },
    patch: { type: 'string', default: '7' },
    image: { type: 'string', default: '28' },
    seed: { type: 'string', default: '1' },
    val: { type: 'string', default: '3000' },
    limit: { type: 'string', default: '0' },
    'test-limit': { type: 'string', default: '0' },
    quick: { type: 'boolean', default: false },
  },
  strict: true,
});

const num = (k: keyof typeof a) => {
  const v = Number(a[k]);
  if (!Number.isFinite(v)) throw new AppError('validation_failed', `--${k} must be a number, got ${String(a[k])}`);
  return v;
};

const quick = a.quick === true;
const opts: RunOptions = {
  // --quick is a smoke test: it must never overwrite the committed backbone by default.
  out: a.out ?? (quick ? '.tmp/pretrain-quick' : 'backbones/default'),
  dataDir: a['data-dir'],
  shape: { width: num('width'), depth: num('depth'), heads: num('heads'), mlpDim: num('mlp'), patchSize: num('patch'), imageSize: num('image') },
  epochs: quick ? 1 : num('epochs'),
  batchSize: num('batch'),
  lr: num('lr'),
  minLr: num('min-lr'),
  warmupEpochs: num('warmup'),
  weightDecay: num('wd'),
  labelSmoothing: num('smoothing'),
  shift: 2,
  flip: true,
  seed: num('seed'),
  valSize: quick ? 200 : num('val'),
  limit: quick ? 640 : num('limit'),
  testLimit: quick ? 600 : num('test-limit'),
  command: `npm run pretrain -- ${process.argv.slice(2).join(' ')}`.trim().replace(/ --$/, ''),
  log: (line) => console.log(line),
};

try {
  const backend = await initBackend('wasm');
  console.log(`tfjs backend: ${backend}`);
  const s = await runPretrain(opts);
  console.log(`wrote ${s.out} (${(s.modelBytes / 1024).toFixed(0)} KiB), test accuracy ${(s.testAcc * 100).toFixed(2)}%, ${(s.wallSeconds / 60).toFixed(1)} min`);
} catch (err) {
  console.error(err instanceof AppError ? `${err.code}: ${err.message}` : err);
  process.exitCode = 1;
}
