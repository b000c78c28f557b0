/**
 * A DTL adapter: the Compact Side Network (low-rank reads A_i, B_i; optional DTL+ fusion conv)
 * plus the linear head. Weights are stored in the layout the forward pass multiplies with —
 * A as [d, r], B as [r, d], head as [d, classes], fusion as [k·k, d] — and converted to the
 * authors' PyTorch layout only in adapter-file.ts.
 */
import * as tf from '@tensorflow/tfjs';
import { z } from 'zod';
import { AppError, validationError, type ErrorCode } from '../errors.js';
import { blockShape, type BackboneConfig } from './backbone-config.js';

const blockList = z
  .array(z.number().int().min(0))
  .refine((a) => new Set(a).size === a.length, 'block indices must be unique');

export const adapterSpecSchema = z.object({
  /** CSN rank r. */
  rank: z.number().int().min(1),
  /** Swish sharpness β in θ(h) = h·sigmoid(βh). */
  beta: z.number().positive().finite(),
  /** Blocks whose input the CSN reads. */
  loraBeforeBlocks: blockList,
  /** Blocks after which θ(h) (fused, for DTL+) is added back. */
  addAfterBlocks: blockList,
  /** DTL+ depthwise kernel size; 0 = plain DTL. Capped to keep the k² slices bounded. */
  fusionKernel: z.number().int().min(0).max(15),
  labels: z
    .array(z.string().min(1))
    .min(2)
    .refine((a) => new Set(a).size === a.length, 'labels must be unique'),
});

export type AdapterSpec = z.infer<typeof adapterSpecSchema>;

export interface AdapterRead {
  /** Aᵀ, [d, r] */
  a: tf.Tensor2D;
  /** Bᵀ, [r, d] */
  b: tf.Tensor2D;
}

export interface Adapter {
  readonly spec: AdapterSpec;
  /** Width and depth of the backbone it was built or validated for. */
  readonly width: number;
  readonly depth: number;
  /** Read block index → its low-rank pair. */
  readonly reads: ReadonlyMap<number, AdapterRead>;
  /** DTL+ taps [k·k, d], or null for plain DTL (and on a Swin, whose taps are per stage: `swin`). */
  readonly fusion: tf.Tensor2D | null;
  /**
   * Set for an adapter on a Swin backbone (swin-adapter.ts has its file format): each read pair
   * has its block's stage width; DTL+ has taps [k·k, C_s] per stage (null for plain DTL).
   */
  readonly swin?: { readonly fusions: tf.Tensor2D[] | null };
  /** [d, classes] */
  readonly headW: tf.Tensor2D;
  /** [classes] */
  readonly headB: tf.Tensor1D;
  /**
   * Softmax temperature T of its probabilities, softmax(logits / T): fitted on the validation
   * split after training (train/calibrate.ts), stored in the file's `dtl` metadata as
   * `temperature`; 1 (raw softmax) for files without it. Logits themselves never change.
   */
  temperature: number;
  /** Bytes held by its tensors. */
  readonly byteSize: number;
  /** Whether the tensors are tf.Variables (training) or plain kept tensors (serving). */
  readonly trainable: boolean;
  readonly disposed: boolean;
  /** In a fixed order: reads by block (A, B), fusion, head weight, head bias. Empty when not trainable. */
  trainableVariables(): tf.Variable[];
  /** Biases get no weight decay. */
  isBias(v: tf.Tensor): boolean;
  dispose(): void;
}

export interface AdapterWeights {
  reads: Map<number, { a: Float32Array; b: Float32Array }>;
  fusion: Float32Array | null;
  /** Swin DTL+ only: taps [k·k, C_s] per stage. */
  stageFusions?: Float32Array[] | null;
  headW: Float32Array;
  headB: Float32Array;
}

/** Checks the spec's block indices and rank against a backbone. */
export function checkSpecAgainstBackbone(spec: AdapterSpec, cfg: BackboneConfig, code: ErrorCode): void {
  for (const [list, what] of [
    [spec.loraBeforeBlocks, 'reads'],
    [spec.addAfterBlocks, 'adds after'],
  ] as const) {
    const bad = list.find((i) => i >= cfg.depth);
    if (bad !== undefined) throw new AppError(code, `adapter ${what} block ${bad} but the backbone has ${cfg.depth} blocks`);
  }
  if (spec.rank > cfg.width) throw new AppError(code, `adapter rank ${spec.rank} exceeds the backbone width ${cfg.width}`);
  // A Swin's early stages are narrower than its last.
  const narrow = cfg.swin ? spec.loraBeforeBlocks.find((i) => spec.rank > blockShape(cfg, i)[1]) : undefined;
  if (narrow !== undefined) throw new AppError(code, `adapter rank ${spec.rank} exceeds block ${narrow}'s width ${blockShape(cfg, narrow)[1]}`);
}

/** Wraps weight arrays (already in forward layout) as an adapter; variables when `trainable`. */
export function adapterFromWeights(cfg: BackboneConfig, spec: AdapterSpec, w: AdapterWeights, trainable: boolean): Adapter {
  const d = cfg.width;
  const r = spec.rank;
  const k = spec.fusionKernel;
  const c = spec.labels.length;
  const made: tf.Tensor[] = [];
  const t = <R extends tf.Rank>(data: Float32Array, shape: number[]): tf.Tensor<R> => {
    const x = tf.tidy(() => {
      const init = tf.tensor(data, shape, 'float32');
      return trainable ? tf.variable(init, true) : init;
    });
    made.push(x);
    return tf.keep(x) as tf.Tensor<R>;
  };
  try {
    const reads = new Map<number, AdapterRead>();
    for (const i of [...w.reads.keys()].sort((x, y) => x - y)) {
      const p = w.reads.get(i)!;
      const di = blockShape(cfg, i)[1]; // d, except in a Swin's narrower stages
      reads.set(i, { a: t<tf.Rank.R2>(p.a, [di, r]), b: t<tf.Rank.R2>(p.b, [r, di]) });
    }
    const fusion = w.fusion && !cfg.swin ? t<tf.Rank.R2>(w.fusion, [k * k, d]) : null;
    const stageFusions = cfg.swin && k > 0 ? cfg.swin.stageWidths.map((ds, st) => t<tf.Rank.R2>(w.stageFusions![st], [k * k, ds])) : null;
    const headW = t<tf.Rank.R2>(w.headW, [d, c]);
    const headB = t<tf.Rank.R1>(w.headB, [c]);
    let disposed = false;
    return {
      spec,
      width: d,
      depth: cfg.depth,
      reads,
      fusion,
      ...(cfg.swin ? { swin: { fusions: stageFusions } } : {}),
      headW,
      headB,
      temperature: 1,
      byteSize: made.reduce((s, x) => s + x.size * 4, 0),
      trainable,
      get disposed() {
        return disposed;
      },
      trainableVariables: () => (trainable ? (made as tf.Variable[]) : []),
      isBias: (v) => v === headB,
      dispose: () => {
        if (disposed) return;
        disposed = true;
        for (const x of made) x.dispose();
      },
    };
  } catch (err) {
    for (const x of made) x.dispose();
    throw err;
  }
}

/** Seeded uniform floats in [-bound, bound) (mulberry32) so initialisation is reproducible on every backend. */
function uniform(count: number, bound: number, rng: () => number): Float32Array {
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = (rng() * 2 - 1) * bound;
  return out;
}

/** Normal(0, std) truncated at ±2 std (Box–Muller with rejection). */
function truncNormal(count: number, std: number, rng: () => number): Float32Array {
  const out = new Float32Array(count);
  for (let i = 0; i < count; ) {
    const u = 1 - rng();
    const z = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng());
    if (Math.abs(z) <= 2) out[i++] = z * std;
  }
  return out;
}

export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A fresh trainable adapter with the paper's initialisation: A uniform ±1/√d (PyTorch's
 * Kaiming-uniform, a = √5), B = 0 (so it starts as the identity on the backbone), DTL+ taps
 * uniform ±1/k, head weight truncated-normal std 0.02, head bias 0.
 */
export function createAdapter(cfg: BackboneConfig, spec: AdapterSpec, opts: { seed?: number } = {}): Adapter {
  const parsed = adapterSpecSchema.safeParse(spec);
  if (!parsed.success) throw validationError(parsed.error, { context: 'invalid adapter spec' });
  const s = parsed.data;
  checkSpecAgainstBackbone(s, cfg, 'validation_failed');
  const rng = mulberry32(opts.seed ?? Math.floor(Math.random() * 2 ** 32));
  const d = cfg.width;
  const r = s.rank;
  const k = s.fusionKernel;
  const reads = new Map<number, { a: Float32Array; b: Float32Array }>();
  for (const i of [...s.loraBeforeBlocks].sort((x, y) => x - y)) {
    const di = blockShape(cfg, i)[1]; // d, except in a Swin's narrower stages
    reads.set(i, { a: uniform(di * r, 1 / Math.sqrt(di), rng), b: new Float32Array(r * di) });
  }
  return adapterFromWeights(
    cfg,
    s,
    {
      reads,
      fusion: k > 0 && !cfg.swin ? uniform(k * k * d, 1 / k, rng) : null,
      // A Swin's DTL+ has one conv per stage (the authors' lora_fusions.{s}).
      ...(cfg.swin && k > 0 ? { stageFusions: cfg.swin.stageWidths.map((ds) => uniform(k * k * ds, 1 / k, rng)) } : {}),
      headW: truncNormal(d * s.labels.length, 0.02, rng),
      headB: new Float32Array(s.labels.length),
    },
    true,
  );
}
