/**
 * Synthetic backbones and adapters for the serving benchmarks: random weights, real file formats,
 * real loaders. Serving cost does not depend on weight values, only on shapes.
 */
import * as tf from '@tensorflow/tfjs';
import { createAdapter, saveAdapter, type AdapterSpec, type Backbone, type BackboneConfig } from '../../src/model/index.js';
import { rng, tinyBackbone } from '../../test/helpers/tiny-backbone.js';

export interface BackboneSize {
  width: number;
  depth: number;
  heads: number;
  imageSize: number;
  patchSize: number;
}

export function describeSize(s: BackboneSize): string {
  const tokens = (s.imageSize / s.patchSize) ** 2 + 1;
  return `ViT width ${s.width}, depth ${s.depth}, heads ${s.heads}, MLP ${4 * s.width}, image ${s.imageSize}/patch ${s.patchSize} (${tokens} tokens)`;
}

export function syntheticBackbone(s: BackboneSize): Backbone {
  return tinyBackbone({ ...s, mlpDim: 4 * s.width, seed: 1 });
}

/** The authors' ViT-B/16 recipe scaled to `depth`: reads before every block, additions after the last half (from block 6 of 12). */
export function authorsSpec(depth: number, classes: number, fusionKernel = 0, rank = 2): AdapterSpec {
  const first = Math.floor(depth / 2);
  return {
    rank,
    beta: 100,
    loraBeforeBlocks: [...Array(depth).keys()],
    addAfterBlocks: [...Array(depth).keys()].filter((i) => i >= first),
    fusionKernel,
    labels: Array.from({ length: classes }, (_, k) => `class-${k}`),
  };
}

/** An adapter file with every weight random (B included), as training would leave it. */
export function adapterFile(cfg: BackboneConfig, spec: AdapterSpec, seed: number): Buffer {
  const adapter = createAdapter(cfg, spec, { seed });
  try {
    const r = rng(seed);
    for (const v of adapter.trainableVariables()) {
      const data = new Float32Array(v.size);
      for (let i = 0; i < data.length; i++) data[i] = (r.uniform() - 0.5) * 0.1;
      tf.tidy(() => v.assign(tf.tensor(data, v.shape)));
    }
    return saveAdapter(adapter);
  } finally {
    adapter.dispose();
  }
}

/** Distinct preprocessed-looking images (values in [-1, 1]). */
export function images(count: number, cfg: BackboneConfig, seed: number): Float32Array[] {
  const r = rng(seed);
  const per = cfg.imageSize ** 2 * 3;
  return Array.from({ length: count }, () => Float32Array.from({ length: per }, () => r.uniform() * 2 - 1));
}

/** ViT-B/16 at 224 (the paper's backbone), as a config only: adapters load against it without weights. */
export const VIT_B: BackboneConfig = {
  layout: 'hf',
  width: 768,
  depth: 12,
  heads: 12,
  mlpDim: 3072,
  patchSize: 16,
  imageSize: 224,
  gridSize: 14,
  numPatches: 196,
  tokens: 197,
  eps: 1e-12,
  mean: [0.5, 0.5, 0.5],
  std: [0.5, 0.5, 0.5],
  qkvBias: true,
};
