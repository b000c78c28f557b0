/**
 * Adapter files: one safetensors file with the authors' PyTorch state-dict names
 * (lora_dict.{i}.lora_A (r, d), lora_dict.{i}.lora_B (d, r), lora_fusion.weight (d, 1, k, k),
 * head.weight (classes, d), head.bias) and `__metadata__.dtl` = JSON of the spec plus whatever
 * the service adds — so adapters move between this service and the authors' code unchanged.
 * `temperature` (optional, > 0; absent = 1) is the calibrated softmax temperature of the
 * probabilities; it is metadata, not a tensor, so the authors' loader ignores it.
 */
import { AppError, describeZodError } from '../errors.js';
import {
  adapterFromWeights,
  adapterSpecSchema,
  checkSpecAgainstBackbone,
  type Adapter,
  type AdapterSpec,
  type AdapterWeights,
} from './adapter.js';
import type { BackboneConfig } from './backbone-config.js';
import { readSafetensors, writeSafetensors, type SafetensorsTensor, type TensorToWrite } from './safetensors.js';
import { readSwinAdapterWeights, SWIN_KIND, swinAdapterTensors } from './swin-adapter.js';

/** [rows, cols] row-major → [cols, rows]. */
function transpose2d(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = src[r * cols + c];
  return out;
}

const SPEC_KEYS = Object.keys(adapterSpecSchema.shape) as Array<keyof AdapterSpec>;

export function saveAdapter(adapter: Adapter, extraMeta: Record<string, unknown> = {}): Buffer {
  if (adapter.disposed) throw new AppError('internal', 'cannot save a disposed adapter');
  const { spec, width: d } = adapter;
  const r = spec.rank;
  const k = spec.fusionKernel;
  const c = spec.labels.length;
  if (adapter.swin) return writeSafetensors(swinAdapterTensors(adapter), { dtl: JSON.stringify(fileMeta(adapter, extraMeta)) });
  const tensors: TensorToWrite[] = [];
  for (const [i, p] of [...adapter.reads.entries()].sort((x, y) => x[0] - y[0])) {
    tensors.push({ name: `lora_dict.${i}.lora_A`, shape: [r, d], data: transpose2d(p.a.dataSync() as Float32Array, d, r) });
    tensors.push({ name: `lora_dict.${i}.lora_B`, shape: [d, r], data: transpose2d(p.b.dataSync() as Float32Array, r, d) });
  }
  if (adapter.fusion) {
    tensors.push({ name: 'lora_fusion.weight', shape: [d, 1, k, k], data: transpose2d(adapter.fusion.dataSync() as Float32Array, k * k, d) });
  }
  tensors.push({ name: 'head.weight', shape: [c, d], data: transpose2d(adapter.headW.dataSync() as Float32Array, d, c) });
  tensors.push({ name: 'head.bias', shape: [c], data: Float32Array.from(adapter.headB.dataSync()) });
  return writeSafetensors(tensors, { dtl: JSON.stringify(fileMeta(adapter, extraMeta)) });
}

function fileMeta(adapter: Adapter, extraMeta: Record<string, unknown>): Record<string, unknown> {
  // The spec's own keys win over anything the caller passes under the same name.
  const meta: Record<string, unknown> = { backboneWidth: adapter.width, backboneDepth: adapter.depth, ...extraMeta };
  for (const key of SPEC_KEYS) meta[key] = adapter.spec[key];
  if (adapter.swin) meta.backboneKind = SWIN_KIND;
  // Only a calibrated adapter names it, so an uncalibrated file is byte for byte what it was.
  if (adapter.temperature !== 1) meta.temperature = adapter.temperature;
  else delete meta.temperature;
  return meta;
}

function checkedTemperature(m: Record<string, unknown>, bad: (msg: string) => never): number {
  const temperature = m.temperature === undefined ? 1 : m.temperature;
  if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature <= 0) {
    bad("'temperature' in the 'dtl' metadata must be a positive number");
  }
  return temperature as number;
}

export interface LoadedAdapter {
  adapter: Adapter;
  /** The whole parsed `dtl` metadata object (spec keys included). */
  meta: Record<string, unknown>;
}

/** An adapter file's contents, validated, its weights in forward layout (float32), nothing on the backend yet. */
export interface ParsedAdapterFile {
  spec: AdapterSpec;
  weights: AdapterWeights;
  /** The calibrated softmax temperature (1 when the file names none). */
  temperature: number;
  /** The whole parsed `dtl` metadata object (spec keys included). */
  meta: Record<string, unknown>;
}

const shapeStr = (s: number[]) => `[${s.join(', ')}]`;

/**
 * Parses and validates an adapter file against a backbone. Malformed files → 'invalid_adapter';
 * a well-formed adapter for another backbone (other width, blocks beyond its depth) →
 * 'adapter_backbone_mismatch'. Loads as plain tensors unless `trainable`; serving holds the
 * weights off the backend instead (resident-adapter.ts).
 */
export function loadAdapter(bytes: Uint8Array, backbone: BackboneConfig, opts: { trainable?: boolean } = {}): LoadedAdapter {
  const { spec, weights, temperature, meta } = parseAdapterFile(bytes, backbone);
  const adapter = adapterFromWeights(backbone, spec, weights, opts.trainable ?? false);
  adapter.temperature = temperature;
  return { adapter, meta };
}

/** Parses and validates an adapter file against a backbone (the errors of loadAdapter); no tensors. */
export function parseAdapterFile(bytes: Uint8Array, backbone: BackboneConfig): ParsedAdapterFile {
  const bad = (msg: string): never => {
    throw new AppError('invalid_adapter', `adapter: ${msg}`);
  };
  const file = readSafetensors(bytes, { code: 'invalid_adapter', what: 'adapter' });
  const raw = file.metadata.dtl;
  if (raw === undefined) bad("no 'dtl' entry in the safetensors metadata");
  let meta: unknown;
  try {
    meta = JSON.parse(raw);
  } catch {
    bad("the 'dtl' metadata is not valid JSON");
  }
  if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) bad("the 'dtl' metadata is not a JSON object");
  const parsed = adapterSpecSchema.safeParse(meta);
  if (!parsed.success) bad(`invalid 'dtl' metadata: ${describeZodError(parsed.error)}`);
  const spec = parsed.data!;

  // Width first: a wrong width makes every shape below wrong, and the real problem is the pairing.
  const head = file.tensors.get('head.weight');
  if (!head) bad("missing tensor 'head.weight'");
  if (head!.shape.length === 2 && head!.shape[0] === spec.labels.length && head!.shape[1] !== backbone.width) {
    throw new AppError(
      'adapter_backbone_mismatch',
      `adapter is for a backbone of width ${head!.shape[1]}, but this backbone's width is ${backbone.width}`,
    );
  }
  checkSpecAgainstBackbone(spec, backbone, 'adapter_backbone_mismatch');
  // Written by saveAdapter (absent from the authors' files): catches a block-count mismatch even
  // when every block index happens to exist in this backbone.
  const m = meta as Record<string, unknown>;
  if (typeof m.backboneDepth === 'number' && m.backboneDepth !== backbone.depth) {
    throw new AppError(
      'adapter_backbone_mismatch',
      `adapter is for a backbone of ${m.backboneDepth} blocks, but this backbone has ${backbone.depth}`,
    );
  }
  if (typeof m.backboneWidth === 'number' && m.backboneWidth !== backbone.width) {
    throw new AppError(
      'adapter_backbone_mismatch',
      `adapter is for a backbone of width ${m.backboneWidth}, but this backbone's width is ${backbone.width}`,
    );
  }

  // A Swin adapter's pairs have per-stage widths and its fusions are per stage (swin-adapter.ts).
  const isSwin = m.backboneKind === SWIN_KIND;
  if (isSwin !== (backbone.swin !== undefined)) {
    throw new AppError('adapter_backbone_mismatch', `adapter is for a ${isSwin ? 'Swin' : 'ViT'} backbone, but this backbone is a ${backbone.swin ? 'Swin' : 'ViT'}`);
  }
  if (isSwin) return { spec, weights: readSwinAdapterWeights(file, spec, backbone, bad), temperature: checkedTemperature(m, bad), meta: m };
  const d = backbone.width;
  const r = spec.rank;
  const k = spec.fusionKernel;
  const c = spec.labels.length;
  const used = new Set<string>();
  const take = (name: string, shape: number[]): Float32Array => {
    const t: SafetensorsTensor | undefined = file.tensors.get(name);
    if (!t) bad(`missing tensor '${name}'`);
    if (t!.shape.length !== shape.length || t!.shape.some((s, i) => s !== shape[i])) {
      bad(`tensor '${name}' has shape ${shapeStr(t!.shape)}, expected ${shapeStr(shape)}`);
    }
    if (!t!.data.every(Number.isFinite)) bad(`tensor '${name}' has non-finite values`);
    used.add(name);
    return t!.data;
  };
  const reads = new Map<number, { a: Float32Array; b: Float32Array }>();
  for (const i of [...spec.loraBeforeBlocks].sort((x, y) => x - y)) {
    reads.set(i, {
      a: transpose2d(take(`lora_dict.${i}.lora_A`, [r, d]), r, d),
      b: transpose2d(take(`lora_dict.${i}.lora_B`, [d, r]), d, r),
    });
  }
  const fusion = k > 0 ? transpose2d(take('lora_fusion.weight', [d, 1, k, k]), d, k * k) : null;
  const headW = transpose2d(take('head.weight', [c, d]), c, d);
  const headB = Float32Array.from(take('head.bias', [c]));
  for (const name of file.tensors.keys()) {
    if (!used.has(name)) bad(`unexpected tensor '${name}' (not described by the 'dtl' metadata)`);
  }
  return { spec, weights: { reads, fusion, headW, headB }, temperature: checkedTemperature(m, bad), meta: m };
}
