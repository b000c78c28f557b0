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
 * `__metadata__.dtl` has the spec keys plus `"backboneKind": "swin"`. The adapter itself (per-block
 * widths, per-stage taps) is built by adapter.ts.
 */
import type { Adapter, AdapterSpec, AdapterWeights } from './adapter.js';
import { blockShape, type BackboneConfig } from './backbone-config.js';
import type { SafetensorsFile, TensorToWrite } from './safetensors.js';

export const SWIN_KIND = 'swin';

/** Width of block i's tokens. */
function blockWidth(cfg: BackboneConfig, i: number): number {
  return blockShape(cfg, i)[1];
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
