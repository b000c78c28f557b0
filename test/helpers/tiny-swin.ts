/**
 * Small random Swin backbones in the Hugging Face SwinModel layout, built in code and read through
 * the real loader (safetensors bytes + config.json → loadBackboneFromFiles). Deterministic per seed.
 */
import { loadBackboneFromFiles, writeSafetensors, type Backbone, type TensorToWrite } from '../../src/model/index.js';
import { rng } from './tiny-backbone.js';

export interface TinySwinOptions {
  embedDim: number;
  depths: number[];
  heads: number[];
  windowSize: number;
  patchSize: number;
  imageSize: number;
  seed?: number;
}

export function tinySwinFiles(o: TinySwinOptions): { model: Buffer; config: Uint8Array } {
  const r = rng(o.seed ?? 1);
  const tensors: TensorToWrite[] = [];
  const put = (name: string, shape: number[], std: number, mean = 0) => {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < data.length; i++) data[i] = mean + r.normal() * std;
    tensors.push({ name, shape, data });
  };
  const ln = (name: string, d: number) => {
    put(`${name}.weight`, [d], 0.1, 1);
    put(`${name}.bias`, [d], 0.05);
  };
  const linear = (name: string, i: number, out: number, bias = true) => {
    put(`${name}.weight`, [out, i], 1 / Math.sqrt(i));
    if (bias) put(`${name}.bias`, [out], 0.05);
  };
  const E = o.embedDim;
  put('embeddings.patch_embeddings.projection.weight', [E, 3, o.patchSize, o.patchSize], 1 / Math.sqrt(3 * o.patchSize ** 2));
  put('embeddings.patch_embeddings.projection.bias', [E], 0.05);
  ln('embeddings.norm', E);
  let grid = o.imageSize / o.patchSize;
  o.depths.forEach((depth, s) => {
    const d = E * 2 ** s;
    const w = Math.min(grid, o.windowSize);
    for (let b = 0; b < depth; b++) {
      const l = `encoder.layers.${s}.blocks.${b}`;
      ln(`${l}.layernorm_before`, d);
      put(`${l}.attention.self.relative_position_bias_table`, [(2 * w - 1) ** 2, o.heads[s]], 0.5);
      for (const q of ['query', 'key', 'value']) linear(`${l}.attention.self.${q}`, d, d);
      linear(`${l}.attention.output.dense`, d, d);
      ln(`${l}.layernorm_after`, d);
      linear(`${l}.intermediate.dense`, d, 4 * d);
      linear(`${l}.output.dense`, 4 * d, d);
    }
    if (s < o.depths.length - 1) {
      ln(`encoder.layers.${s}.downsample.norm`, 4 * d);
      linear(`encoder.layers.${s}.downsample.reduction`, 4 * d, 2 * d, false);
      grid /= 2;
    }
  });
  ln('layernorm', E * 2 ** (o.depths.length - 1));
  const config = {
    model_type: 'swin',
    image_size: o.imageSize,
    patch_size: o.patchSize,
    embed_dim: E,
    depths: o.depths,
    num_heads: o.heads,
    window_size: o.windowSize,
  };
  return { model: writeSafetensors(tensors), config: new TextEncoder().encode(JSON.stringify(config)) };
}

export function tinySwin(o: TinySwinOptions): Backbone {
  return loadBackboneFromFiles(tinySwinFiles(o));
}
