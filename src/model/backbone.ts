/**
 * A frozen ViT backbone held as kept tfjs tensors, laid out for the forward pass: every Linear
 * weight pre-transposed to [in, out] so matMul needs no transpose flag (on wasm a transposed
 * operand costs an extra transpose pass per call, kernels/wasm-matmul.ts), q/k/v as separate
 * matrices (timm's fused qkv is split on load), the patch projection as an NHWC conv filter.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { AppError } from '../errors.js';
import { parseJson, type BackboneConfig } from './backbone-config.js';

// The types live in backbone-types.ts (swin-backbone.ts builds a Backbone too, without a cycle).
export type { Backbone, BlockWeights } from './backbone-types.js';
import { detectLayout, readHf, readTimm, type CanonicalWeights } from './backbone-layouts.js';
import { atImageSize } from './pos-embed.js';
import { droppedPart, parameterCount, prepareBlock, prepareEmbed, registerResidency, settleBackboneWeights, type Residency } from './backbone-residency.js';
import { openSafetensorsFile, readSafetensors, type SafetensorsFile, type SafetensorsTensor } from './safetensors.js';
import type { Backbone, BlockWeights } from './backbone-types.js';
import { buildSwinBackbone, readHfSwin, SWIN_SKIPPED } from './swin-backbone.js';
import { isSwinConfig } from './swin-config.js';
import { swinAtImageSize } from './swin-size.js';
import { isTimmSwin, readTimmSwin } from './swin-timm.js';

export interface BackboneFiles {
  /** model.safetensors */
  model: Uint8Array;
  /** config.json */
  config: Uint8Array;
  /** preprocessor_config.json (Hugging Face only; optional) */
  preprocessor?: Uint8Array;
}

/**
 * The backbone over `w`: its tfjs tensors are made part by part on first read (backbone-residency.ts
 * says why); the composition roots settle it once the engine is known.
 */
export function buildBackbone(config: BackboneConfig, w: CanonicalWeights, identity: string): Backbone {
  const made: tf.Tensor[] = [];
  const parts = new Map<string, Record<string, tf.Tensor>>();
  const residency: Residency = {
    host: w,
    tensors: (part) => void make(part),
    materialize: () => {
      for (const part of ['embed', 'norm', ...Array.from({ length: config.depth }, (_, i) => `block${i}`)]) make(part);
    },
    has: (part) => parts.has(part),
  };
  // Created outside any tidy and kept, so a caller's tidy cannot dispose the frozen weights.
  const keep = (values: Record<string, { data: Float32Array; shape: number[] }>): Record<string, tf.Tensor> => {
    const out: Record<string, tf.Tensor> = {};
    try {
      for (const [k, v] of Object.entries(values)) {
        const t = tf.keep(tf.tensor(v.data, v.shape, 'float32'));
        made.push(t);
        out[k] = t;
      }
    } catch (err) {
      for (const t of Object.values(out)) t.dispose();
      throw err;
    }
    return out;
  };
  function make(part: string): Record<string, tf.Tensor> {
    const done = parts.get(part);
    if (done) return done;
    const host = residency.host;
    if (!host) throw droppedPart(part === 'embed' ? 'patch embedding' : part);
    const d = config.width;
    const values =
      part === 'embed' ? prepareEmbed(config, host)
      : part === 'norm' ? { normG: { data: host.normG, shape: [d] }, normB: { data: host.normB, shape: [d] } }
      : prepareBlock(config, host.blocks[Number(part.slice('block'.length))]);
    const tensors = keep(values);
    parts.set(part, tensors);
    return tensors;
  }
  const blocks: BlockWeights[] = [];
  for (let i = 0; i < config.depth; i++) {
    Object.defineProperty(blocks, i, { enumerable: true, get: () => make(`block${i}`) as unknown as BlockWeights });
  }
  Object.freeze(blocks);
  const backbone: Backbone = {
    config,
    identity,
    get patchFilter() { return make('embed').patchFilter as tf.Tensor4D; },
    get patchBias() { return make('embed').patchBias as tf.Tensor1D; },
    get cls() { return make('embed').cls as tf.Tensor3D; },
    get pos() { return make('embed').pos as tf.Tensor3D; },
    blocks,
    get normG() { return make('norm').normG as tf.Tensor1D; },
    get normB() { return make('norm').normB as tf.Tensor1D; },
    byteSize: parameterCount(config) * 4,
    dispose: () => {
      for (const x of made) if (!x.isDisposed) x.dispose();
      made.length = 0;
      parts.clear();
      residency.host = undefined;
    },
  };
  registerResidency(backbone, residency);
  return backbone;
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
  /**
   * Leave the weights unsettled (host copy kept, tfjs tensors made on first read) for the caller to
   * settle once it knows the engine (backbone-residency.ts); default: settled in tfjs at once.
   */
  deferResidency?: boolean;
}

/** The loaders' last step: settle in tfjs unless the caller defers it. */
export function settledUnlessDeferred(backbone: Backbone, opts: LoadOptions): Backbone {
  if (opts.deferResidency !== true) settleBackboneWeights(backbone, 'tfjs');
  return backbone;
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
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part);
  return swin ? swinFromTensors(tensors, files, hash, opts) : fromTensors(tensors, files, hash, opts);
}

/**
 * A Swin from its checkpoint's tensors, built resident in tfjs at once (the state
 * settleBackboneWeights(…, 'tfjs') gives a ViT): a Swin has no onnxruntime graphs, so there is no
 * native residency to defer to.
 */
function swinFromTensors(tensors: Map<string, SafetensorsTensor>, files: Omit<BackboneFiles, 'model'>, hash: Hash, opts: LoadOptions): Backbone {
  const swinConfig = parseJson(files.config, 'backbone config.json');
  const preprocessor = files.preprocessor ? parseJson(files.preprocessor, 'backbone preprocessor_config.json') : undefined;
  const read = isTimmSwin(tensors) ? readTimmSwin(tensors, swinConfig) : readHfSwin(tensors, swinConfig, preprocessor);
  hash.update(files.config);
  if (files.preprocessor) hash.update(files.preprocessor);
  const sized = swinAtImageSize({ ...read, identity: hash.digest('hex') }, opts.imageSize ?? read.config.preprocessorSize);
  return buildSwinBackbone(sized.config, sized.weights, sized.identity);
}

/** A ViT from its checkpoint's tensors; `hash` has seen the weights' bytes, the config files are added here. */
function fromTensors(tensors: Map<string, SafetensorsTensor>, files: Omit<BackboneFiles, 'model'>, hash: Hash, opts: LoadOptions): Backbone {
  const { layout, prefix } = detectLayout(tensors);
  const config = parseJson(files.config, 'backbone config.json');
  const preprocessor = files.preprocessor ? parseJson(files.preprocessor, 'backbone preprocessor_config.json') : undefined;
  const { config: cfg, weights } = layout === 'hf' ? readHf(tensors, prefix, config, preprocessor) : readTimm(tensors, config);
  hash.update(files.config);
  if (files.preprocessor) hash.update(files.preprocessor);
  const sized = atImageSize({ config: cfg, weights, identity: hash.digest('hex') }, opts.imageSize ?? cfg.preprocessorSize);
  return settledUnlessDeferred(buildBackbone(sized.config, sized.weights, sized.identity), opts);
}

async function readOptional(file: string): Promise<Uint8Array | undefined> {
  try {
    return await readFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new AppError('invalid_backbone', `cannot read ${file}: ${(err as Error).message}`);
  }
}

/**
 * Loads `model.safetensors`, `config.json` and (optionally) `preprocessor_config.json` from a
 * folder. Deferred (`deferResidency`), the weights file is read a tensor at a time as the engine
 * asks for each part instead of whole (its hash streamed), so loading never holds the whole file.
 */
export async function loadBackboneFromDir(dir: string, opts: LoadOptions = {}): Promise<Backbone> {
  const modelFile = path.join(dir, 'model.safetensors');
  const [config, preprocessor] = await Promise.all([
    readOptional(path.join(dir, 'config.json')),
    readOptional(path.join(dir, 'preprocessor_config.json')),
  ]);
  // A Swin (tensors this reader skips, no native residency) is read whole.
  if (opts.deferResidency === true && !(config !== undefined && peekSwin(config))) {
    const exists = await stat(modelFile).then((st) => st.isFile(), () => false);
    if (!exists) throw new AppError('invalid_backbone', `backbone folder '${dir}' has no model.safetensors`);
    if (!config) throw new AppError('invalid_backbone', `backbone folder '${dir}' has no config.json`);
    const file = openSafetensorsFile(modelFile, { code: 'invalid_backbone', what: 'backbone model.safetensors' });
    const hash = createHash('sha256');
    for await (const chunk of createReadStream(modelFile, { highWaterMark: 1 << 22 })) hash.update(chunk as Buffer);
    return fromTensors(file.tensors, { config, preprocessor }, hash, opts);
  }
  const model = await readOptional(modelFile);
  if (!model) throw new AppError('invalid_backbone', `backbone folder '${dir}' has no model.safetensors`);
  if (!config) throw new AppError('invalid_backbone', `backbone folder '${dir}' has no config.json`);
  return loadBackboneFromFiles({ model, config, preprocessor }, opts);
}
