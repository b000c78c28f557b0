/**
 * AdamW with decoupled weight decay (Loshchilov & Hutter), step for step as PyTorch's
 * torch.optim.AdamW, which the DTL authors train with: p ← p·(1 − lr·wd) (skipped for biases),
 * then the bias-corrected Adam update. The learning rate is a plain field so a schedule can set
 * it before every step.
 */
import * as tf from '@tensorflow/tfjs';

export interface AdamWOptions {
  lr?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Decoupled weight decay (the authors use 0.05). */
  weightDecay?: number;
}

export interface GradientItem {
  variable: tf.Variable;
  grad: tf.Tensor;
  /** false for biases (no weight decay). */
  decay: boolean;
}

export class AdamW {
  lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  private t = 0;
  private readonly moments = new Map<tf.Variable, { m: tf.Variable; v: tf.Variable }>();

  constructor(opts: AdamWOptions = {}) {
    this.lr = opts.lr ?? 1e-3;
    this.beta1 = opts.beta1 ?? 0.9;
    this.beta2 = opts.beta2 ?? 0.999;
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.05;
  }

  /** Steps taken so far. */
  get step(): number {
    return this.t;
  }

  applyGradients(items: GradientItem[]): void {
    this.t++;
    const { beta1: b1, beta2: b2, eps, lr, weightDecay: wd } = this;
    const bc1 = 1 - b1 ** this.t;
    const sqrtBc2 = Math.sqrt(1 - b2 ** this.t);
    for (const { variable, grad, decay } of items) {
      let s = this.moments.get(variable);
      if (!s) {
        s = tf.tidy(() => ({ m: tf.variable(tf.zerosLike(variable), false), v: tf.variable(tf.zerosLike(variable), false) }));
        this.moments.set(variable, s);
      }
      const { m, v } = s;
      tf.tidy(() => {
        m.assign(tf.add(tf.mul(m, b1), tf.mul(grad, 1 - b1)));
        v.assign(tf.add(tf.mul(v, b2), tf.mul(tf.square(grad), 1 - b2)));
        const base = decay && wd > 0 ? tf.mul(variable, 1 - lr * wd) : variable;
        const denom = tf.add(tf.div(tf.sqrt(v), sqrtBc2), eps);
        variable.assign(tf.sub(base, tf.mul(tf.div(m, denom), lr / bc1)));
      });
    }
  }

  /** Frees the moment estimates (the optimised variables belong to their adapter). */
  dispose(): void {
    for (const { m, v } of this.moments.values()) {
      m.dispose();
      v.dispose();
    }
    this.moments.clear();
  }
}
