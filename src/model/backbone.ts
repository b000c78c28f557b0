/**
 * A frozen ViT backbone held as kept tfjs tensors, laid out for the forward pass: every Linear
 * weight pre-transposed to [in, out] so matMul needs no transpose flag (on wasm a transposed
 * operand costs an extra transpose pass per call, kernels/wasm-matmul.ts), q/k/v as separate
 * matrices (timm's fused qkv is split on load), the patch projection as an NHWC conv filter.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { AppError } from '../errors.js';
import { parseJson, type BackboneConfig } from './backbone-config.js';

// The types live in backbone-types.ts (swin-backbone.ts builds a Backbone too, without a cycle).
export type { Backbone, BlockWeights } from './backbone-types.js';
import { detectLayout, readHf, readTimm, type CanonicalWeights } from './backbone-layouts.js';
import { atImageSize } from './pos-embed.js';
import { readSafetensors, type SafetensorsFile, type SafetensorsTensor } from './safetensors.js';
import type { Backbone } from './backbone-types.js';
import { buildSwinBackbone, readHfSwin, SWIN_SKIPPED } from './swin-backbone.js';
import { isSwinConfig } from './swin-config.js';
import { isTimmSwin, readTimmSwin } from './swin-timm.js';

export interface BackboneFiles {
  /** model.safetensors */
  model: Uint8Array;
  /** config.json */
  config: Uint8Array;
  /** preprocessor_config.json (Hugging Face only; optional) */
  preprocessor?: Uint8Array;
}

/** PyTorch Linear [out, in] → [in, out]. */
function transpose2d(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let c = 0; c < cols; c++) out[c * rows + r] = src[base + c];
  }
  return out;
}

/** PyTorch Conv2d [d, 3, p, p] → tfjs conv2d filter [p, p, 3, d]. */
function convFilter(src: Float32Array, d: number, p: number): Float32Array {
  const out = new Float32Array(d * 3 * p * p);
  for (let o = 0; o < d; o++) {
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < p; y++) {
        for (let x = 0; x < p; x++) out[((y * p + x) * 3 + c) * d + o] = src[((o * 3 + c) * p + y) * p + x];
      }
    }
  }
  return out;
}

export function buildBackbone(config: BackboneConfig, w: CanonicalWeights, identity: string): Backbone {
  const { width: d, mlpDim: m, patchSize: p, tokens: T } = config;
  const scale = 1 / Math.sqrt(d / config.heads);
  const scaled = (a: Float32Array) => a.map((v) => v * scale);
  const made: tf.Tensor[] = [];
  // Created outside any tidy and kept, so a caller's tidy cannot dispose the frozen weights.
  const t = <R extends tf.Rank>(data: Float32Array, shape: number[]): tf.Tensor<R> => {
    const tensor = tf.keep(tf.tensor(data, shape, 'float32')) as unknown as tf.Tensor<R>;
    made.push(tensor);
    return tensor;
  };
  try {
    const blocks = w.blocks.map((b) => ({
      ln1g: t<tf.Rank.R1>(b.ln1g, [d]), ln1b: t<tf.Rank.R1>(b.ln1b, [d]),
      wq: t<tf.Rank.R2>(scaled(transpose2d(b.wq, d, d)), [d, d]), bq: t<tf.Rank.R1>(scaled(b.bq), [d]),
      wk: t<tf.Rank.R2>(transpose2d(b.wk, d, d), [d, d]), bk: t<tf.Rank.R1>(b.bk, [d]),
      wv: t<tf.Rank.R2>(transpose2d(b.wv, d, d), [d, d]), bv: t<tf.Rank.R1>(b.bv, [d]),
      wo: t<tf.Rank.R2>(transpose2d(b.wo, d, d), [d, d]), bo: t<tf.Rank.R1>(b.bo, [d]),
      ln2g: t<tf.Rank.R1>(b.ln2g, [d]), ln2b: t<tf.Rank.R1>(b.ln2b, [d]),
      w1: t<tf.Rank.R2>(transpose2d(b.w1, m, d), [d, m]), b1: t<tf.Rank.R1>(b.b1, [m]),
      w2: t<tf.Rank.R2>(transpose2d(b.w2, d, m), [m, d]), b2: t<tf.Rank.R1>(b.b2, [d]),
    }));
    const backbone: Backbone = {
      config,
      identity,
      patchFilter: t<tf.Rank.R4>(convFilter(w.patchW, d, p), [p, p, 3, d]),
      patchBias: t<tf.Rank.R1>(w.patchB, [d]),
      cls: t<tf.Rank.R3>(w.cls, [1, 1, d]),
      pos: t<tf.Rank.R3>(w.pos, [1, T, d]),
      blocks,
      normG: t<tf.Rank.R1>(w.normG, [d]),
      normB: t<tf.Rank.R1>(w.normB, [d]),
      byteSize: made.reduce((s, x) => s + x.size * 4, 0),
      dispose: () => {
        for (const x of made) if (!x.isDisposed) x.dispose();
      },
    };
    return backbone;
  } catch (err) {
    for (const x of made) x.dispose();
    throw err;
  }
}

function mergeShards(files: SafetensorsFile[]): Map<string, SafetensorsTensor> {
  if (files.length === 1) return files[0].tensors;
  const all = new Map<string, SafetensorsTensor>();
  for (const f of files) {
    for (const [name, t] of f.tensors) {
      if (all.has(name)) throw new AppError('invalid_backbone', `tensor '${name}' is in more than one shard`);
      all.set(name, t);
    }
  }
  return all;
}

/** A sharded checkpoint: the files a model.safetensors.index.json lists, in its order. */
export type ShardedBackboneFiles = Omit<BackboneFiles, 'model'> & { shards: readonly Uint8Array[] };

export interface LoadOptions {
  /** Run at this input size (position embeddings resized); default: the preprocessor config's size, else the checkpoint's. */
  imageSize?: number;
}

function peekSwin(config: Uint8Array): boolean {
  try {
    return isSwinConfig(parseJson(config, 'backbone config.json'));
  } catch {
    return false;
  }
}

export function loadBackboneFromFiles(files: BackboneFiles | ShardedBackboneFiles, opts: LoadOptions = {}): Backbone {
  const parts = 'shards' in files ? files.shards : [files.model];
  // Peeked without failing, so a broken config.json is reported where it always was (after the weights).
  const swin = peekSwin(files.config);
  const tensors = mergeShards(parts.map((bytes, i) => readSafetensors(bytes, {
    code: 'invalid_backbone',
    what: parts.length > 1 ? `backbone shard ${i + 1}` : 'backbone model.safetensors',
    ...(swin ? { skip: (name: string) => SWIN_SKIPPED.test(name) } : {}),
  })));
  const identity = (): string => {
    const hash = createHash('sha256');
    for (const part of parts) hash.update(part);
    hash.update(files.config);
    if (files.preprocessor) hash.update(files.preprocessor);
    return hash.digest('hex');
  };
  const preprocessorJson = () => (files.preprocessor ? parseJson(files.preprocessor, 'backbone preprocessor_config.json') : undefined);
  if (swin) {
    const swinConfig = parseJson(files.config, 'backbone config.json');
    const read = isTimmSwin(tensors) ? readTimmSwin(tensors, swinConfig) : readHfSwin(tensors, swinConfig, preprocessorJson());
    if (opts.imageSize !== undefined && opts.imageSize !== read.config.imageSize) {
      throw new AppError('invalid_backbone', `this Swin runs at ${read.config.imageSize}px; running it at ${opts.imageSize}px is not supported`);
    }
    return buildSwinBackbone(read.config, read.weights, identity());
  }
  const { layout, prefix } = detectLayout(tensors);
  const config = parseJson(files.config, 'backbone config.json');
  const preprocessor = preprocessorJson();
  const { config: cfg, weights } = layout === 'hf' ? readHf(tensors, prefix, config, preprocessor) : readTimm(tensors, config);
  const sized = atImageSize({ config: cfg, weights, identity: identity() }, opts.imageSize ?? cfg.preprocessorSize);
  return buildBackbone(sized.config, sized.weights, sized.identity);
}

async function readOptional(file: string): Promise<Uint8Array | undefined> {
  try {
    return await readFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new AppError('invalid_backbone', `cannot read ${file}: ${(err as Error).message}`);
  }
}

/** Loads `model.safetensors`, `config.json` and (optionally) `preprocessor_config.json` from a folder. */
export async function loadBackboneFromDir(dir: string, opts: LoadOptions = {}): Promise<Backbone> {
  const [model, config, preprocessor] = await Promise.all([
    readOptional(path.join(dir, 'model.safetensors')),
    readOptional(path.join(dir, 'config.json')),
    readOptional(path.join(dir, 'preprocessor_config.json')),
  ]);
  if (!model) throw new AppError('invalid_backbone', `backbone folder '${dir}' has no model.safetensors`);
  if (!config) throw new AppError('invalid_backbone', `backbone folder '${dir}' has no config.json`);
  return loadBackboneFromFiles({ model, config, preprocessor }, opts);
}
