/** Full fine-tuning: every backbone weight and the head train (the backbone itself is not touched: the copy is). */
import * as tf from '@tensorflow/tfjs';
import { linear } from '../../src/model/layers.js';
import { trainableFromBackbone } from '../../src/model/vit-trainable.js';
import { newHead } from '../recipe.js';
import { tapeMethod, type TapeModel } from './tape-method.js';
import type { BaselineMethod, FitArgs } from './types.js';

function model(backbone: FitArgs['backbone'], classes: number, seed: number): TapeModel {
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

export const fullFinetune: BaselineMethod = tapeMethod({
  id: 'full',
  label: 'Full fine-tune',
  lrGrid: [1e-4, 3e-4, 1e-3],
  build: model,
});
