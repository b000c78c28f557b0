/**
 * Pixel logistic regression: multinomial logistic regression on the raw grey values (0..1, one
 * weight per pixel per class), no backbone at all — the three-line classifier a transfer method
 * has to beat to be worth running. Same schedule, seeds, split and optimiser (AdamW, weight decay
 * on the weights only) as every other method.
 */
import * as tf from '@tensorflow/tfjs';
import { AdamW } from '../../src/model/index.js';
import { linear } from '../../src/model/layers.js';
import type { LabelledSet } from '../../scripts/pretrain/train.js';
import { newHead, runEpochs } from '../recipe.js';
import { baseline } from './baseline.js';
import { adamwStep, ce, sizeOf, stepPeak } from './common.js';
import type { BaselineMethod, FitArgs, Fitted } from './types.js';

/** Grey values of `rows` scaled to 0..1, [rows, side²]. */
function rawPixels(set: LabelledSet, rows: readonly number[]): tf.Tensor2D {
  const per = set.side * set.side;
  const out = new Float32Array(rows.length * per);
  rows.forEach((r, i) => {
    for (let k = 0; k < per; k++) out[i * per + k] = set.pixels[r * per + k] / 255;
  });
  return tf.tensor2d(out, [rows.length, per]);
}

export const pixelLogReg: BaselineMethod = baseline({
  id: 'pixel',
  label: 'Pixel logistic regression',
  lrGrid: [1e-3, 3e-3, 1e-2, 3e-2],
  fit({ set, rows, classes, lr, recipe }: FitArgs): Fitted {
    const head = newHead(set.side * set.side, classes, recipe.seed);
    const vars = [head.w, head.b];
    const opt = new AdamW({ weightDecay: recipe.weightDecay });
    const x = rawPixels(set, rows);
    const position = new Map(rows.map((r, i) => [r, i]));
    try {
      const losses = runEpochs(rows, recipe, lr, (batch, stepLr) => {
        opt.lr = stepLr;
        const labels = batch.map((r) => set.labels[r]);
        return adamwStep(opt, vars, (v) => v !== head.b, () =>
          tf.tidy(() => ce(linear(tf.gather(x, tf.tensor1d(batch.map((r) => position.get(r)!), 'int32')), head.w, head.b), labels)));
      });
      return {
        trainableParams: sizeOf(vars),
        losses,
        predict: (s, r) => {
          const px = rawPixels(s, r);
          try {
            const arg = tf.tidy(() => tf.argMax(linear(px, head.w, head.b), 1));
            try {
              return Int32Array.from(arg.dataSync());
            } finally {
              arg.dispose();
            }
          } finally {
            px.dispose();
          }
        },
        dispose: () => vars.forEach((v) => v.dispose()),
      };
    } catch (err) {
      vars.forEach((v) => v.dispose());
      throw err;
    } finally {
      x.dispose();
      opt.dispose();
    }
  },
  async stepPeakBytes({ classes, pixels, labels }) {
    const side = pixels.shape[1];
    const head = newHead(side * side, classes, 1);
    const vars = [head.w, head.b];
    const opt = new AdamW();
    // One grey channel of the normalised input: same shapes as the raw pixels.
    const x = tf.tidy(() => tf.reshape(tf.slice(pixels, [0, 0, 0, 0], [-1, -1, -1, 1]), [pixels.shape[0], side * side]) as tf.Tensor2D);
    try {
      return await stepPeak(() => adamwStep(opt, vars, (v) => v !== head.b, () => tf.tidy(() => ce(linear(x, head.w, head.b), labels))));
    } finally {
      x.dispose();
      opt.dispose();
      vars.forEach((v) => v.dispose());
    }
  },
});
