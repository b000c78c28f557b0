/**
 * The frozen ViT blocks of a training step on onnxruntime: each block's forward and its
 * vector–Jacobian product (vit-vjp-graph.ts) as synchronous sessions (sync-session.ts), built the
 * first time a step needs block i — a serving runtime never builds them. train-frozen.ts pulls
 * every suffix block through these when the backbone has them, and keeps only the adapter's own
 * maths (CSN reads, additions, head) on tfjs.
 */
import { AppError } from '../../errors.js';
import type { Backbone } from '../backbone.js';
import type { NativeEngine } from './engine.js';
import type { SyncSession } from './sync-session.js';
import { blockModel } from './vit-graph.js';
import { blockVjpModel } from './vit-vjp-graph.js';
import type { WeightFiles } from './weight-files.js';

export interface FrozenBlocks {
  /** x_{i+1} = Block_i(x_i), rows [n, tokens, d]. */
  forward(i: number, x: Float32Array, n: number): Float32Array;
  /** dx_i = (∂Block_i/∂x_i)ᵀ · dy. */
  vjp(i: number, x: Float32Array, dy: Float32Array, n: number): Float32Array;
  release(): void;
}

/**
 * Rows × tokens per session run. A grouped step's K·B rows in one run were up to 1.7× slower per
 * row than in runs of 16–128 rows (one intra-op thread, the bundled backbone: its elementwise
 * passes over the MLP's hidden activations outgrow the caches); with two threads 128 rows did as
 * well as 256. ≈ 2,048 token rows is 128 rows of the bundled backbone and 10 of ViT-B/16@224.
 */
const TOKEN_ROWS_PER_RUN = 2048;

export function nativeFrozenBlocks(engine: NativeEngine, backbone: Backbone, files?: WeightFiles): FrozenBlocks | undefined {
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
  const per = tokens * width;
  const chunk = Math.max(1, Math.floor(TOKEN_ROWS_PER_RUN / tokens));
  /** Runs `session` over the rows in chunks; `inputs` are [n, tokens, d] each. */
  const chunked = (session: SyncSession, inputs: Record<string, Float32Array>, n: number): Float32Array => {
    for (const a of Object.values(inputs)) dims(a, n);
    const slice = (r0: number, r1: number) =>
      Object.fromEntries(Object.entries(inputs).map(([name, a]) => [name, { data: a.subarray(r0 * per, r1 * per), dims: [r1 - r0, tokens, width] }]));
    if (n <= chunk) return session.run(slice(0, n));
    const out = new Float32Array(n * per);
    for (let r = 0; r < n; r += chunk) out.set(session.run(slice(r, Math.min(n, r + chunk))), r * per);
    return out;
  };
  return {
    forward(i, x, n) {
      check(i);
      return chunked((forward[i] ??= make(blockModel(backbone, i, files), { weightsDir: files?.dir })), { x }, n);
    },
    vjp(i, x, dy, n) {
      check(i);
      return chunked((vjp[i] ??= make(blockVjpModel(backbone, i, files), { weightsDir: files?.dir })), { x, dy }, n);
    },
    release() {
      released = true;
      for (const s of [...forward, ...vjp]) s?.release();
      forward.length = 0;
      vjp.length = 0;
    },
  };
}
