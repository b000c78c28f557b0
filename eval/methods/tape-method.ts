/**
 * A method whose trainable weights sit inside the backbone (full fine-tuning, LoRA): each step
 * runs the whole model from pixels under the tape, then one AdamW step. The two differ only in
 * the model they build.
 */
import * as tf from '@tensorflow/tfjs';
import { AdamW } from '../../src/model/index.js';
import { pixelsOf, predictRows, runEpochs } from '../recipe.js';
import { adamwStep, ce, sizeOf, stepPeak } from './common.js';
import { baseline } from './baseline.js';
import type { BaselineMethod, FitArgs, Fitted, Method } from './types.js';

export interface TapeModel {
  vars: tf.Variable[];
  /** Whether AdamW's weight decay applies to a variable (not to biases). */
  decays: (v: tf.Variable) => boolean;
  logits: (px: tf.Tensor4D) => tf.Tensor2D;
  dispose: () => void;
}

export function tapeMethod(o: Pick<Method, 'id' | 'label' | 'lrGrid'> & { build: (backbone: FitArgs['backbone'], classes: number, seed: number) => TapeModel }): BaselineMethod {
  return baseline({
    ...o,
    fit({ backbone, set, rows, classes, lr, recipe }: FitArgs): Fitted {
      const m = o.build(backbone, classes, recipe.seed);
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
      const m = o.build(backbone, classes, 1);
      const opt = new AdamW();
      try {
        return await stepPeak(() => adamwStep(opt, m.vars, m.decays, () => ce(m.logits(pixels), labels)));
      } finally {
        opt.dispose();
        m.dispose();
      }
    },
  });
}
