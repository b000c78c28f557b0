/**
 * AdamW with decoupled weight decay (Loshchilov & Hutter), step for step as PyTorch's
 * torch.optim.AdamW, which the DTL authors train with: p ← p·(1 − lr·wd) (skipped for biases),
 * then the bias-corrected Adam update. The learning rate is a plain field so a schedule can set
 * it before every step.
 *
 * The update runs on the host, over Float32Arrays: an adapter is a few thousand to a few hundred
 * thousand numbers in a dozen small tensors, where ~14 tfjs ops per tensor per step cost far more
 * in dispatch than the arithmetic (measured: a quarter of a grouped 8-candidate step on the
 * bundled backbone). Each step reads the gradient and the current value (so an outside assign,
 * like restoring a best epoch, is seen), and writes the variable once. The moments are float32,
 * as PyTorch keeps them; the arithmetic of one element is done in double and rounded once.
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
  private readonly moments = new Map<tf.Variable, { m: Float32Array; v: Float32Array }>();

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
    const stepSize = lr / bc1;
    for (const { variable, grad, decay } of items) {
      const g = grad.dataSync() as Float32Array;
      const p = Float32Array.from(variable.dataSync() as Float32Array);
      let s = this.moments.get(variable);
      if (!s) {
        s = { m: new Float32Array(p.length), v: new Float32Array(p.length) };
        this.moments.set(variable, s);
      }
      const { m, v } = s;
      const keep = decay && wd > 0 ? 1 - lr * wd : 1;
      for (let i = 0; i < p.length; i++) {
        const gi = g[i];
        m[i] = b1 * m[i] + (1 - b1) * gi;
        v[i] = b2 * v[i] + (1 - b2) * gi * gi;
        p[i] = p[i] * keep - (m[i] / (Math.sqrt(v[i]) / sqrtBc2 + eps)) * stepSize;
      }
      tf.tidy(() => variable.assign(tf.tensor(p, variable.shape, 'float32')));
    }
  }

  /** Forgets the moment estimates (the optimised variables belong to their adapter). */
  dispose(): void {
    this.moments.clear();
  }
}
