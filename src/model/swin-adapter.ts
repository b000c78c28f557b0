/**
 * DTL adapters on a Swin backbone. The CSN as the authors' Swin code builds it: block i's read
 * pair has block i's stage width (A_i: (r, C_s), B_i: (C_s, r)); DTL+ has one depthwise conv per
 * stage (`lora_fusions.{s}`, C_s channels), shared by the additions in that stage; the head reads
 * the last stage's pooled features. In memory, as for ViT: A as [C, r], B as [r, C], taps as
 * [k·k, C] per stage, head [C_last, classes].
 *
 * File (the authors' state-dict names): `lora_dict.{i}.lora_A` (r, C), `lora_dict.{i}.lora_B`
 * (C, r), `lora_fusions.{s}.weight` (C_s, 1, k, k) for every stage s (DTL+ only: the authors'
 * model has one per stage whether or not the stage adds), `head.weight`, `head.bias`;
 * `__metadata__.dtl` has the spec keys plus `"backboneKind": "swin"`.
 */
import * as tf from '@tensorflow/tfjs';
import { AppError, type ErrorCode } from '../errors.js';
import type { Adapter, AdapterRead, AdapterSpec, AdapterWeights } from './adapter.js';
import type { BackboneConfig } from './backbone-config.js';
import type { SafetensorsFile, TensorToWrite } from './safetensors.js';

/** What a Swin adapter adds to the Adapter interface. */
export interface SwinAdapterParts {
  /** Per stage DTL+ taps [k·k, C_s], or null for plain DTL. */
  fusions: tf.Tensor2D[] | null;
}

export const SWIN_KIND = 'swin';

/** Width of block i's tokens. */
export function blockWidth(cfg: BackboneConfig, i: number): number {
  const a = cfg.swin!;
  return a.stageWidths[a.blockStage[i]];
}

/** The spec's rank against every read block's width (block indices are checked as for ViT). */
export function checkSwinSpec(spec: AdapterSpec, cfg: BackboneConfig, code: ErrorCode): void {
  for (const i of spec.loraBeforeBlocks) {
    if (i < cfg.depth && spec.rank > blockWidth(cfg, i)) {
      throw new AppError(code, `adapter rank ${spec.rank} exceeds block ${i}'s width ${blockWidth(cfg, i)}`);
    }
  }
}

/** A Swin adapter from weights already in forward layout (`stageFusions` per stage for DTL+). */
export function swinAdapterFromWeights(cfg: BackboneConfig, spec: AdapterSpec, w: AdapterWeights, trainable: boolean): Adapter {
  const a = cfg.swin!;
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
      const d = blockWidth(cfg, i);
      reads.set(i, { a: t<tf.Rank.R2>(p.a, [d, r]), b: t<tf.Rank.R2>(p.b, [r, d]) });
    }
    let fusions: tf.Tensor2D[] | null = null;
    if (k > 0) {
      if (!w.stageFusions || w.stageFusions.length !== a.depths.length) throw new AppError('internal', 'a Swin DTL+ adapter needs one fusion per stage');
      fusions = w.stageFusions.map((f, s) => t<tf.Rank.R2>(f, [k * k, a.stageWidths[s]]));
    }
    const headW = t<tf.Rank.R2>(w.headW, [cfg.width, c]);
    const headB = t<tf.Rank.R1>(w.headB, [c]);
    let disposed = false;
    return {
      spec,
      width: cfg.width,
      depth: cfg.depth,
      reads,
      fusion: null,
      swin: { fusions },
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

/** The paper's initialisation on a Swin: A uniform ±1/√C_i, B = 0, taps uniform ±1/k per stage, head truncated-normal. */
export function initSwinWeights(
  cfg: BackboneConfig,
  spec: AdapterSpec,
  draw: { uniform: (count: number, bound: number) => Float32Array; truncNormal: (count: number, std: number) => Float32Array },
): AdapterWeights {
  const a = cfg.swin!;
  const r = spec.rank;
  const k = spec.fusionKernel;
  const reads = new Map<number, { a: Float32Array; b: Float32Array }>();
  for (const i of [...spec.loraBeforeBlocks].sort((x, y) => x - y)) {
    const d = blockWidth(cfg, i);
    reads.set(i, { a: draw.uniform(d * r, 1 / Math.sqrt(d)), b: new Float32Array(r * d) });
  }
  return {
    reads,
    fusion: null,
    stageFusions: k > 0 ? a.stageWidths.map((d) => draw.uniform(k * k * d, 1 / k)) : null,
    headW: draw.truncNormal(cfg.width * spec.labels.length, 0.02),
    headB: new Float32Array(spec.labels.length),
  };
}

/** [rows, cols] row-major → [cols, rows]. */
function transpose2d(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = src[r * cols + c];
  return out;
}

/** The adapter's tensors under the authors' Swin state-dict names. */
export function swinAdapterTensors(adapter: Adapter): TensorToWrite[] {
  const { spec } = adapter;
  const r = spec.rank;
  const k = spec.fusionKernel;
  const c = spec.labels.length;
  const tensors: TensorToWrite[] = [];
  for (const [i, p] of [...adapter.reads.entries()].sort((x, y) => x[0] - y[0])) {
    const d = p.a.shape[0];
    tensors.push({ name: `lora_dict.${i}.lora_A`, shape: [r, d], data: transpose2d(p.a.dataSync() as Float32Array, d, r) });
    tensors.push({ name: `lora_dict.${i}.lora_B`, shape: [d, r], data: transpose2d(p.b.dataSync() as Float32Array, r, d) });
  }
  adapter.swin?.fusions?.forEach((f, s) => {
    const d = f.shape[1];
    tensors.push({ name: `lora_fusions.${s}.weight`, shape: [d, 1, k, k], data: transpose2d(f.dataSync() as Float32Array, k * k, d) });
  });
  const d = adapter.width;
  tensors.push({ name: 'head.weight', shape: [c, d], data: transpose2d(adapter.headW.dataSync() as Float32Array, d, c) });
  tensors.push({ name: 'head.bias', shape: [c], data: Float32Array.from(adapter.headB.dataSync()) });
  return tensors;
}

/** Reads a Swin adapter's tensors from its file (spec already parsed and checked against the backbone's depth). */
export function readSwinAdapterWeights(file: SafetensorsFile, spec: AdapterSpec, cfg: BackboneConfig, bad: (msg: string) => never): AdapterWeights {
  const a = cfg.swin!;
  const r = spec.rank;
  const k = spec.fusionKernel;
  const c = spec.labels.length;
  const used = new Set<string>();
  const take = (name: string, shape: number[]): Float32Array => {
    const t = file.tensors.get(name);
    if (!t) return bad(`missing tensor '${name}'`);
    if (t.shape.length !== shape.length || t.shape.some((s, i) => s !== shape[i])) {
      bad(`tensor '${name}' has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`);
    }
    if (!t.data.every(Number.isFinite)) bad(`tensor '${name}' has non-finite values`);
    used.add(name);
    return t.data;
  };
  const reads = new Map<number, { a: Float32Array; b: Float32Array }>();
  for (const i of [...spec.loraBeforeBlocks].sort((x, y) => x - y)) {
    const d = blockWidth(cfg, i);
    reads.set(i, { a: transpose2d(take(`lora_dict.${i}.lora_A`, [r, d]), r, d), b: transpose2d(take(`lora_dict.${i}.lora_B`, [d, r]), d, r) });
  }
  const stageFusions = k > 0 ? a.stageWidths.map((d, s) => transpose2d(take(`lora_fusions.${s}.weight`, [d, 1, k, k]), d, k * k)) : null;
  const headW = transpose2d(take('head.weight', [c, cfg.width]), c, cfg.width);
  const headB = Float32Array.from(take('head.bias', [c]));
  for (const name of file.tensors.keys()) {
    if (!used.has(name)) bad(`unexpected tensor '${name}' (not described by the 'dtl' metadata)`);
  }
  return { reads, fusion: null, stageFusions, headW, headB };
}
