/**
 * LoRA-style baseline: rank-r updates A·B added to the query and value projections of every block
 * (Hu et al.; the variant the DTL paper compares against), backbone frozen, head trained. Written
 * as merged weights W + s·A·B inside the tape — the same function and gradients as the side-branch
 * form, and the same property that matters here: the trainable weights sit inside every block, so
 * back-propagation needs the activations of every block.
 */
import * as tf from '@tensorflow/tfjs';
import type { Backbone, BlockWeights } from '../../src/model/index.js';
import { embed, linear, pool, vitBlock } from '../../src/model/layers.js';
import { mulberry32 } from '../../src/model/adapter.js';
import { newHead } from '../recipe.js';
import { tapeMethod, type TapeModel } from './tape-method.js';
import type { BaselineMethod } from './types.js';

export interface LoraOptions {
  rank: number;
  /** LoRA's α; the update is scaled by α / rank. */
  alpha: number;
}

interface LoraPair {
  a: tf.Variable<tf.Rank.R2>;
  b: tf.Variable<tf.Rank.R2>;
}

function model(backbone: Backbone, o: LoraOptions, classes: number, seed: number): TapeModel {
  const { width: d, heads, depth } = backbone.config;
  const rand = mulberry32(seed);
  // A: PyTorch Kaiming-uniform (±1/√d, as LoRA's reference code); B: 0, so training starts at the backbone.
  const pair = (): LoraPair =>
    tf.tidy(() => ({
      a: tf.variable(tf.tensor2d(Float32Array.from({ length: d * o.rank }, () => (rand() * 2 - 1) / Math.sqrt(d)), [d, o.rank]), true) as tf.Variable<tf.Rank.R2>,
      b: tf.variable(tf.zeros([o.rank, d]), true) as tf.Variable<tf.Rank.R2>,
    }));
  const q = Array.from({ length: depth }, pair);
  const v = Array.from({ length: depth }, pair);
  const head = newHead(d, classes, seed);
  const vars = [...q.flatMap((p) => [p.a, p.b]), ...v.flatMap((p) => [p.a, p.b]), head.w, head.b];
  const scale = o.alpha / o.rank;
  // The backbone's wq already carries attention's 1/√headDim; the update to q must carry it too.
  const qScale = scale / Math.sqrt(d / heads);
  const logits = (px: tf.Tensor4D): tf.Tensor2D =>
    tf.tidy(() => {
      let x = embed(backbone, px);
      backbone.blocks.forEach((w, i) => {
        const merged: BlockWeights = {
          ...w,
          wq: tf.add(w.wq, tf.mul(tf.matMul(q[i].a, q[i].b), qScale)) as tf.Tensor2D,
          wv: tf.add(w.wv, tf.mul(tf.matMul(v[i].a, v[i].b), scale)) as tf.Tensor2D,
        };
        x = vitBlock(x, merged, backbone.config);
      });
      return linear(pool(backbone, x), head.w, head.b);
    });
  const decays = (x: tf.Variable) => x !== head.b;
  return { vars, decays, logits, dispose: () => vars.forEach((x) => x.dispose()) };
}

export function loraMethod(o: LoraOptions): BaselineMethod {
  return tapeMethod({
    id: 'lora',
    label: `LoRA (q,v; r=${o.rank})`,
    lrGrid: [1e-3, 3e-3, 1e-2],
    build: (backbone, classes, seed) => model(backbone, o, classes, seed),
  });
}

export const lora = loraMethod({ rank: 4, alpha: 4 });
