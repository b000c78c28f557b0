/**
 * Linear probe: a head on the frozen backbone's pooled feature. The features of the training
 * images are computed once (the backbone never changes), then the head trains on them.
 */
import * as tf from '@tensorflow/tfjs';
import { AdamW, backboneFeatures, type Backbone } from '../../src/model/index.js';
import { linear } from '../../src/model/layers.js';
import type { LabelledSet } from '../../scripts/pretrain/train.js';
import { newHead, pixelsOf, predictRows, runEpochs } from '../recipe.js';
import { adamwStep, ce, sizeOf, stepPeak } from './common.js';
import { baseline } from './baseline.js';
import type { BaselineMethod, FitArgs, Fitted } from './types.js';

function features(backbone: Backbone, set: LabelledSet, rows: readonly number[], batch = 250): tf.Tensor2D {
  const parts: tf.Tensor2D[] = [];
  try {
    for (let s = 0; s < rows.length; s += batch) {
      const px = pixelsOf(backbone, set, rows.slice(s, s + batch));
      try {
        parts.push(backboneFeatures(backbone, px));
      } finally {
        px.dispose();
      }
    }
    return tf.concat(parts, 0);
  } finally {
    for (const p of parts) p.dispose();
  }
}

export const linearProbe: BaselineMethod = baseline({
  id: 'linear',
  label: 'Linear probe',
  lrGrid: [1e-2, 3e-2, 1e-1, 3e-1],
  fit({ backbone, set, rows, classes, lr, recipe }: FitArgs): Fitted {
    const head = newHead(backbone.config.width, classes, recipe.seed);
    const vars = [head.w, head.b];
    const opt = new AdamW({ weightDecay: recipe.weightDecay });
    const feats = features(backbone, set, rows);
    const position = new Map(rows.map((r, i) => [r, i]));
    try {
      const losses = runEpochs(rows, recipe, lr, (batch, stepLr) => {
        opt.lr = stepLr;
        const labels = batch.map((r) => set.labels[r]);
        return adamwStep(opt, vars, (v) => v !== head.b, () =>
          tf.tidy(() => ce(linear(tf.gather(feats, tf.tensor1d(batch.map((r) => position.get(r)!), 'int32')), head.w, head.b), labels)));
      });
      return {
        trainableParams: sizeOf(vars),
        losses,
        predict: (s, r) =>
          predictRows(backbone, s, r, (px) => {
            const f = backboneFeatures(backbone, px); // kept: freed here, not by the caller's tidy
            try {
              return linear(f, head.w, head.b);
            } finally {
              f.dispose();
            }
          }),
        dispose: () => vars.forEach((v) => v.dispose()),
      };
    } catch (err) {
      vars.forEach((v) => v.dispose());
      throw err;
    } finally {
      feats.dispose();
      opt.dispose();
    }
  },
  async stepPeakBytes({ backbone, classes, pixels, labels }) {
    const head = newHead(backbone.config.width, classes, 1);
    const vars = [head.w, head.b];
    const opt = new AdamW();
    // The frozen forward runs outside the gradient tape (the tape would keep its activations).
    const step = () => {
      const f = backboneFeatures(backbone, pixels);
      try {
        return adamwStep(opt, vars, (v) => v !== head.b, () => tf.tidy(() => ce(linear(f, head.w, head.b), labels)));
      } finally {
        f.dispose();
      }
    };
    try {
      return await stepPeak(step);
    } finally {
      opt.dispose();
      vars.forEach((v) => v.dispose());
    }
  },
});
