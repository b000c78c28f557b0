/**
 * The loaded backbone as the forward pass sees it (built by backbone.ts for a ViT, by
 * swin-backbone.ts for a Swin): kept tfjs tensors, every Linear as [in, out], q/k/v separate with
 * 1/√dh folded into q, the patch projection as an NHWC conv filter.
 */
import type * as tf from '@tensorflow/tfjs';
import type { BackboneConfig } from './backbone-config.js';

export interface SwinMerge {
  /** LayerNorm over the 4C concatenation. */
  normG: tf.Tensor1D;
  normB: tf.Tensor1D;
  /** [4C, 2C], no bias. */
  w: tf.Tensor2D;
}

export interface SwinParts {
  patchNormG: tf.Tensor1D;
  patchNormB: tf.Tensor1D;
  /** [1, numPatches, C] when the checkpoint has an absolute position embedding. */
  absPos: tf.Tensor3D | null;
  /**
   * Per block, what is added to its attention logits [windows, heads, N, N] (N = window²): the
   * relative position bias, plus the shifted-window mask (0 / −100) for shifted blocks; windows
   * is 1 for unshifted blocks (broadcast over all windows).
   */
  attnBias: tf.Tensor4D[];
  /** merges[s] follows stage s (all stages but the last). */
  merges: SwinMerge[];
}

export interface BlockWeights {
  ln1g: tf.Tensor1D; ln1b: tf.Tensor1D;
  /** [d, d] each, [in, out]. wq and bq come pre-multiplied by 1/√headDim (attention's scale). */
  wq: tf.Tensor2D; bq: tf.Tensor1D;
  wk: tf.Tensor2D; bk: tf.Tensor1D;
  wv: tf.Tensor2D; bv: tf.Tensor1D;
  wo: tf.Tensor2D; bo: tf.Tensor1D;
  ln2g: tf.Tensor1D; ln2b: tf.Tensor1D;
  /** [d, mlpDim] */
  w1: tf.Tensor2D; b1: tf.Tensor1D;
  /** [mlpDim, d] */
  w2: tf.Tensor2D; b2: tf.Tensor1D;
}

export interface Backbone {
  readonly config: BackboneConfig;
  /** sha256 (hex) of the weights file (or its shards, in order), then config.json, then preprocessor_config.json if given. */
  readonly identity: string;
  /** [p, p, 3, d] NHWC conv filter. */
  readonly patchFilter: tf.Tensor4D;
  readonly patchBias: tf.Tensor1D;
  /** [1, 1, d] */
  readonly cls: tf.Tensor3D;
  /** [1, tokens, d] */
  readonly pos: tf.Tensor3D;
  readonly blocks: readonly BlockWeights[];
  readonly normG: tf.Tensor1D;
  readonly normB: tf.Tensor1D;
  /**
   * Set for a Swin Transformer (swin-backbone.ts): then `blocks` hold each stage's widths,
   * `cls`/`pos` are empty and the forward goes through swin-layers.ts.
   */
  readonly swin?: SwinParts;
  /** Bytes of all weight tensors. */
  readonly byteSize: number;
  dispose(): void;
}
