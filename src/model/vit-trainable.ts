/**
 * A ViT whose every weight is a tf.Variable: what pretraining from scratch and full fine-tuning
 * need, where the frozen Backbone of backbone.ts only holds kept constants. The weights use the
 * same forward layout as Backbone ([in, out] linears, NHWC patch filter, separate q/k/v), so the
 * forward pass is the very same layers.ts code; `view()` lends them out as a Backbone.
 *
 * One difference: Backbone folds attention's 1/√headDim into wq/bq at load time. Here wq/bq stay
 * unscaled and view() multiplies inside the tape, so the optimiser sees PyTorch's parametrisation
 * (folding the scale in would silently give q a √headDim-times larger effective learning rate).
 */
import * as tf from '@tensorflow/tfjs';
import { mulberry32 } from './adapter.js';
import type { Backbone, BackboneFiles, BlockWeights } from './backbone.js';
import { hfBackboneConfig, type BackboneConfig } from './backbone-config.js';
import { pool, vitBlock } from './layers.js';
import { writeSafetensors, type TensorToWrite } from './safetensors.js';

export interface VitShape {
  width: number;
  depth: number;
  heads: number;
  mlpDim: number;
  patchSize: number;
  imageSize: number;
  eps?: number;
  mean?: [number, number, number];
  std?: [number, number, number];
}

type BlockKey = keyof BlockWeights;
const BLOCK_KEYS: BlockKey[] = ['ln1g', 'ln1b', 'wq', 'bq', 'wk', 'bk', 'wv', 'bv', 'wo', 'bo', 'ln2g', 'ln2b', 'w1', 'b1', 'w2', 'b2'];
/** Matrices get weight decay; biases, LayerNorm, cls and position embeddings do not (timm's rule). */
const DECAYED_BLOCK_KEYS = new Set<BlockKey>(['wq', 'wk', 'wv', 'wo', 'w1', 'w2']);

export interface TrainableVit {
  readonly config: BackboneConfig;
  readonly patchFilter: tf.Variable<tf.Rank.R4>;
  readonly patchBias: tf.Variable<tf.Rank.R1>;
  readonly cls: tf.Variable<tf.Rank.R3>;
  readonly pos: tf.Variable<tf.Rank.R3>;
  /** wq/bq unscaled (see the file comment). */
  readonly blocks: ReadonlyArray<Record<BlockKey, tf.Variable>>;
  readonly normG: tf.Variable<tf.Rank.R1>;
  readonly normB: tf.Variable<tf.Rank.R1>;
  /** Every variable, in a fixed order. */
  variables(): tf.Variable[];
  /** Whether AdamW decays this variable. */
  decays(v: tf.Variable): boolean;
  /**
   * The weights as a Backbone for layers.ts. Creates the scaled wq/bq tensors: call it inside
   * the tidy or gradient tape of the forward pass that uses it.
   */
  view(): Backbone;
  /** Pooled features (mean of patch tokens, final LayerNorm) of pixels [n, S, S, 3]. */
  features(pixels: tf.Tensor4D): tf.Tensor2D;
  /** The Hugging Face ViT files (model.safetensors F32, config.json, preprocessor_config.json). */
  toHfFiles(metadata?: Record<string, string>): Required<BackboneFiles>;
  dispose(): void;
}

interface InitialWeights {
  patchFilter: tf.Tensor4D;
  patchBias: tf.Tensor1D;
  cls: tf.Tensor3D;
  pos: tf.Tensor3D;
  blocks: Array<Record<BlockKey, tf.Tensor>>;
  normG: tf.Tensor1D;
  normB: tf.Tensor1D;
}

function hfConfigJson(s: Required<VitShape>): Record<string, unknown> {
  return {
    architectures: ['ViTModel'],
    model_type: 'vit',
    hidden_size: s.width,
    num_hidden_layers: s.depth,
    num_attention_heads: s.heads,
    intermediate_size: s.mlpDim,
    hidden_act: 'gelu',
    hidden_dropout_prob: 0,
    attention_probs_dropout_prob: 0,
    initializer_range: 0.02,
    layer_norm_eps: s.eps,
    image_size: s.imageSize,
    patch_size: s.patchSize,
    num_channels: 3,
    qkv_bias: true,
  };
}

function preprocessorJson(s: Required<VitShape>): Record<string, unknown> {
  return {
    image_processor_type: 'ViTImageProcessor',
    do_resize: true,
    size: { height: s.imageSize, width: s.imageSize },
    resample: 2,
    do_rescale: true,
    rescale_factor: 1 / 255,
    do_normalize: true,
    image_mean: s.mean,
    image_std: s.std,
  };
}

function withDefaults(s: VitShape): Required<VitShape> {
  return { eps: 1e-6, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], ...s };
}

/** [rows, cols] → [cols, rows] on plain arrays (tfjs layout ↔ PyTorch Linear layout). */
function transposed(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = src[r * cols + c];
  return out;
}

/**
 * layers.embed's patch projection as patch extraction + one 2-D matMul: the same maths, but the
 * wasm backend has no Conv2DBackpropFilter kernel, so the conv form cannot be trained there.
 * The NHWC filter [p, p, 3, d] flattens in (y, x, channel) order, as the patches do.
 */
export function patchEmbed(backbone: Backbone, pixels: tf.Tensor4D): tf.Tensor3D {
  const { patchSize: p, gridSize: g, numPatches, width: d } = backbone.config;
  const n = pixels.shape[0];
  const patches = tf.reshape(tf.transpose(tf.reshape(pixels, [n, g, p, g, p, 3]), [0, 1, 3, 2, 4, 5]), [n * numPatches, p * p * 3]) as tf.Tensor2D;
  const proj = tf.add(tf.matMul(patches, tf.reshape(backbone.patchFilter, [p * p * 3, d]) as tf.Tensor2D), backbone.patchBias);
  const cls = tf.broadcastTo(backbone.cls, [n, 1, d]);
  return tf.add(tf.concat([cls, tf.reshape(proj, [n, numPatches, d])], 1), backbone.pos) as tf.Tensor3D;
}

function build(shape: Required<VitShape>, init: InitialWeights): TrainableVit {
  const config = hfBackboneConfig(hfConfigJson(shape), preprocessorJson(shape));
  const all: tf.Variable[] = [];
  const decayed = new Set<tf.Variable>();
  const v = <R extends tf.Rank>(t: tf.Tensor, decay: boolean): tf.Variable<R> => {
    const x = tf.variable(t, true) as tf.Variable<R>;
    all.push(x);
    if (decay) decayed.add(x);
    return x;
  };
  const patchFilter = v<tf.Rank.R4>(init.patchFilter, true);
  const patchBias = v<tf.Rank.R1>(init.patchBias, false);
  const cls = v<tf.Rank.R3>(init.cls, false);
  const pos = v<tf.Rank.R3>(init.pos, false);
  const blocks = init.blocks.map((b) => {
    const out = {} as Record<BlockKey, tf.Variable>;
    for (const k of BLOCK_KEYS) out[k] = v(b[k], DECAYED_BLOCK_KEYS.has(k));
    return out;
  });
  const normG = v<tf.Rank.R1>(init.normG, false);
  const normB = v<tf.Rank.R1>(init.normB, false);
  const scale = 1 / Math.sqrt(config.width / config.heads);

  const view = (): Backbone => ({
    config,
    identity: 'trainable',
    patchFilter,
    patchBias,
    cls,
    pos,
    blocks: blocks.map((b) => ({ ...(b as unknown as BlockWeights), wq: tf.mul(b.wq, scale) as tf.Tensor2D, bq: tf.mul(b.bq, scale) as tf.Tensor1D })),
    normG,
    normB,
    byteSize: all.reduce((s, x) => s + x.size * 4, 0),
    dispose: () => {},
  });

  const toHfFiles = (metadata?: Record<string, string>): Required<BackboneFiles> => {
    const { width: d, mlpDim: m, patchSize: p, tokens: T } = config;
    const data = (t: tf.Tensor) => t.dataSync() as Float32Array;
    const tensors: TensorToWrite[] = [];
    const put = (name: string, shape: number[], values: Float32Array) => tensors.push({ name, shape, data: values });
    put('embeddings.cls_token', [1, 1, d], data(cls));
    put('embeddings.position_embeddings', [1, T, d], data(pos));
    // [p, p, 3, d] (NHWC filter) → PyTorch Conv2d [d, 3, p, p].
    const conv = tf.tidy(() => tf.transpose(patchFilter, [3, 2, 0, 1]));
    put('embeddings.patch_embeddings.projection.weight', [d, 3, p, p], data(conv));
    conv.dispose();
    put('embeddings.patch_embeddings.projection.bias', [d], data(patchBias));
    blocks.forEach((b, i) => {
      const l = `encoder.layer.${i}.`;
      const lin = (name: string, w: tf.Variable, bias: tf.Variable, inDim: number, outDim: number) => {
        put(`${l}${name}.weight`, [outDim, inDim], transposed(data(w), inDim, outDim));
        put(`${l}${name}.bias`, [outDim], data(bias));
      };
      put(`${l}layernorm_before.weight`, [d], data(b.ln1g));
      put(`${l}layernorm_before.bias`, [d], data(b.ln1b));
      lin('attention.attention.query', b.wq, b.bq, d, d);
      lin('attention.attention.key', b.wk, b.bk, d, d);
      lin('attention.attention.value', b.wv, b.bv, d, d);
      lin('attention.output.dense', b.wo, b.bo, d, d);
      put(`${l}layernorm_after.weight`, [d], data(b.ln2g));
      put(`${l}layernorm_after.bias`, [d], data(b.ln2b));
      lin('intermediate.dense', b.w1, b.b1, d, m);
      lin('output.dense', b.w2, b.b2, m, d);
    });
    put('layernorm.weight', [d], data(normG));
    put('layernorm.bias', [d], data(normB));
    const json = (o: unknown) => Buffer.from(`${JSON.stringify(o, null, 2)}\n`, 'utf8');
    return {
      model: writeSafetensors(tensors, { format: 'pt', ...metadata }),
      config: json(hfConfigJson(shape)),
      preprocessor: json(preprocessorJson(shape)),
    };
  };

  let disposed = false;
  return {
    config,
    patchFilter,
    patchBias,
    cls,
    pos,
    blocks,
    normG,
    normB,
    variables: () => [...all],
    decays: (x) => decayed.has(x),
    view,
    features: (pixels) =>
      tf.tidy(() => {
        const bb = view();
        let x = patchEmbed(bb, pixels);
        for (const w of bb.blocks) x = vitBlock(x, w, config);
        return pool(bb, x);
      }),
    toHfFiles,
    dispose: () => {
      if (disposed) return;
      disposed = true;
      for (const x of all) x.dispose();
    },
  };
}

/** Normal(0, std) truncated at ±2 std. */
function truncNormal(count: number, std: number, rand: () => number): Float32Array {
  const out = new Float32Array(count);
  for (let i = 0; i < count; ) {
    const z = Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
    if (Math.abs(z) <= 2) out[i++] = z * std;
  }
  return out;
}

/**
 * A fresh ViT with timm's initialisation: linears, cls and position embeddings truncated-normal
 * std 0.02, patch projection uniform ±1/√fan_in (PyTorch's Conv2d default), LayerNorm 1/0,
 * biases 0. Seeded, so a run is reproducible.
 */
export function createTrainableVit(shape: VitShape, seed: number): TrainableVit {
  const s = withDefaults(shape);
  const { width: d, mlpDim: m, patchSize: p, depth } = s;
  const tokens = (s.imageSize / p) ** 2 + 1;
  const rand = mulberry32(seed);
  const temps: tf.Tensor[] = [];
  const t = <T extends tf.Tensor>(x: T): T => {
    temps.push(x);
    return x;
  };
  const tn = (shp: number[]) => t(tf.tensor(truncNormal(shp.reduce((a, b) => a * b, 1), 0.02, rand), shp));
  const fanIn = 3 * p * p;
  const conv = Float32Array.from({ length: p * p * 3 * d }, () => (rand() * 2 - 1) / Math.sqrt(fanIn));
  const ones = (n: number) => t(tf.ones([n]) as tf.Tensor1D);
  const zeros = (n: number) => t(tf.zeros([n]) as tf.Tensor1D);
  try {
    const blocks = Array.from({ length: depth }, () => ({
      ln1g: ones(d), ln1b: zeros(d),
      wq: tn([d, d]), bq: zeros(d),
      wk: tn([d, d]), bk: zeros(d),
      wv: tn([d, d]), bv: zeros(d),
      wo: tn([d, d]), bo: zeros(d),
      ln2g: ones(d), ln2b: zeros(d),
      w1: tn([d, m]), b1: zeros(m),
      w2: tn([m, d]), b2: zeros(d),
    }));
    return build(s, {
      patchFilter: t(tf.tensor4d(conv, [p, p, 3, d])),
      patchBias: zeros(d),
      cls: tn([1, 1, d]) as tf.Tensor3D,
      pos: tn([1, tokens, d]) as tf.Tensor3D,
      blocks,
      normG: ones(d),
      normB: zeros(d),
    });
  } finally {
    // Variables hold their own reference to the data: the initial tensors can go.
    for (const x of temps) x.dispose();
  }
}

/** Trainable copies of a loaded backbone's weights (full fine-tuning); wq/bq are unscaled back. */
export function trainableFromBackbone(backbone: Backbone): TrainableVit {
  const c = backbone.config;
  const shape: Required<VitShape> = {
    width: c.width,
    depth: c.depth,
    heads: c.heads,
    mlpDim: c.mlpDim,
    patchSize: c.patchSize,
    imageSize: c.imageSize,
    eps: c.eps,
    mean: c.mean,
    std: c.std,
  };
  const unscale = Math.sqrt(c.width / c.heads);
  const scaled = backbone.blocks.map((b) => ({ wq: tf.mul(b.wq, unscale), bq: tf.mul(b.bq, unscale) }));
  try {
    // tf.variable shares the constant's data (reference-counted); assign() swaps in new data,
    // so training never writes into the frozen backbone.
    return build(shape, {
      patchFilter: backbone.patchFilter,
      patchBias: backbone.patchBias,
      cls: backbone.cls,
      pos: backbone.pos,
      blocks: backbone.blocks.map((b, i) => ({ ...b, ...scaled[i] })),
      normG: backbone.normG,
      normB: backbone.normB,
    });
  } finally {
    for (const x of scaled) {
      x.wq.dispose();
      x.bq.dispose();
    }
  }
}
