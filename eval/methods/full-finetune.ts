/** Full fine-tuning: every backbone weight and the head train (the backbone itself is not touched: the copy is). */
import * as tf from '@tensorflow/tfjs';
import { AdamW } from '../../src/model/index.js';
import { linear } from '../../src/model/layers.js';
import { trainableFromBackbone } from '../../src/model/vit-trainable.js';
import { newHead, pixelsOf, predictRows, runEpochs } from '../recipe.js';
import { adamwStep, ce, sizeOf, stepPeak } from './common.js';
import type { FitArgs, Fitted, Method } from './types.js';

function model(backbone: FitArgs['backbone'], classes: number, seed: number) {
  const vit = trainableFromBackbone(backbone);
  const head = newHead(backbone.config.width, classes, seed);
  const vars = [...vit.variables(), head.w, head.b];
  const decays = (v: tf.Variable) => v === head.w || vit.decays(v);
  const logits = (px: tf.Tensor4D) => linear(vit.features(px), head.w, head.b);
  const dispose = () => {
    vit.dispose();
    head.w.dispose();
    head.b.dispose();
  };
  return { vars, decays, logits, dispose };
}

export const fullFinetune: Method = {
  id: 'full',
  label: 'Full fine-tune',
  lrGrid: [1e-4, 3e-4, 1e-3],
  fit({ backbone, set, rows, classes, lr, recipe }: FitArgs): Fitted {
    const m = model(backbone, classes, recipe.seed);
    const opt = new AdamW({ weightDecay: recipe.weightDecay });
    try {
      const losses = runEpochs(rows, recipe, lr, (batch, stepLr) => {
        opt.lr = stepLr;
        const px = pixelsOf(backbone, set, batch);
        try {
          return adamwStep(opt, m.vars, m.decays, () => ce(m.logits(px), batch.map((r) => set.labels[r])));
        } finally {
          px.dispose();
        }
      });
      return { trainableParams: sizeOf(m.vars), losses, predict: (s, r) => predictRows(backbone, s, r, m.logits), dispose: m.dispose };
    } catch (err) {
      m.dispose();
      throw err;
    } finally {
      opt.dispose();
    }
  },
  async stepPeakBytes({ backbone, classes, pixels, labels }) {
    const m = model(backbone, classes, 1);
    const opt = new AdamW();
    try {
      return await stepPeak(() => adamwStep(opt, m.vars, m.decays, () => ce(m.logits(pixels), labels)));
    } finally {
      opt.dispose();
      m.dispose();
    }
  },
};
