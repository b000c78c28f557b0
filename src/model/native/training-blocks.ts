/**
 * The frozen ViT blocks of a training step on onnxruntime: each block's forward and its
 * vector–Jacobian product (vit-vjp-graph.ts) as synchronous sessions (sync-session.ts), built the
 * first time a step needs block i — a serving runtime never builds them. train-blockwise.ts pulls
 * every suffix block through these when the backbone has them, and keeps only the adapter's own
 * maths (CSN reads, additions, head) on tfjs.
 */
import { AppError } from '../../errors.js';
import type { Backbone } from '../backbone.js';
import type { NativeEngine } from './engine.js';
import type { SyncSession } from './sync-session.js';
import { blockModel } from './vit-graph.js';
import { blockVjpModel } from './vit-vjp-graph.js';

export interface FrozenBlocks {
  /** x_{i+1} = Block_i(x_i), rows [n, tokens, d]. */
  forward(i: number, x: Float32Array, n: number): Float32Array;
  /** dx_i = (∂Block_i/∂x_i)ᵀ · dy. */
  vjp(i: number, x: Float32Array, dy: Float32Array, n: number): Float32Array;
  release(): void;
}

export function nativeFrozenBlocks(engine: NativeEngine, backbone: Backbone): FrozenBlocks | undefined {
  const make = engine.syncSession;
  if (!make || backbone.swin) return undefined;
  const { tokens, width, depth } = backbone.config;
  const forward: Array<SyncSession | undefined> = [];
  const vjp: Array<SyncSession | undefined> = [];
  let released = false;
  const dims = (x: Float32Array, n: number) => {
    if (released) throw new AppError('internal', 'native training blocks have been released');
    if (x.length !== n * tokens * width) throw new AppError('internal', `block input has ${x.length} values, expected ${n}×${tokens}×${width}`);
    return [n, tokens, width];
  };
  const check = (i: number) => {
    if (!Number.isInteger(i) || i < 0 || i >= depth) throw new AppError('internal', `block ${i} is outside 0..${depth - 1}`);
  };
  return {
    forward(i, x, n) {
      check(i);
      const session = (forward[i] ??= make(blockModel(backbone, i)));
      return session.run({ x: { data: x, dims: dims(x, n) } });
    },
    vjp(i, x, dy, n) {
      check(i);
      const session = (vjp[i] ??= make(blockVjpModel(backbone, i)));
      return session.run({ x: { data: x, dims: dims(x, n) }, dy: { data: dy, dims: dims(dy, n) } });
    },
    release() {
      released = true;
      for (const s of [...forward, ...vjp]) s?.release();
      forward.length = 0;
      vjp.length = 0;
    },
  };
}
