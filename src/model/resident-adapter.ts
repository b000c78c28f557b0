/**
 * The serving cache's form of an adapter: its weights in plain typed arrays outside the tfjs
 * backend, and float32 tensors made from them only for the batch that uses them
 * (`materialiseGroups`), then freed. tfjs has no float16 dtype (wasm cannot hold one), and a
 * loaded `Adapter` is ~26 small tensors, each with its JS objects (≈ 15 KiB per ViT-B adapter)
 * besides its wasm bytes; this form is the weights plus one object. Precisions (SERVE_PRECISION):
 *
 *   float32  every weight as float32 (exact)
 *   float16  every weight as float16 bits in a Uint16Array
 *   compact  float16, except the head weight: block-scaled 12-bit integers (int12.ts), the part
 *            that grows with the classes
 *
 * Layout of `weights` (forward layout, as adapter.ts): per read block in ascending order A [d, r]
 * then B [r, d]; the DTL+ taps [k·k, d] if any; head bias [classes]; head weight [d, classes]
 * (absent when compact: in `head`). Measured costs and errors are in README.md.
 */
import * as tf from '@tensorflow/tfjs';
import { AppError } from '../errors.js';
import { adapterFromWeights, type Adapter, type AdapterSpec, type AdapterWeights } from './adapter.js';
import { parseAdapterFile } from './adapter-file.js';
import { blockShape, type BackboneConfig } from './backbone-config.js';
import { decodeInt12, encodeInt12, type Int12Blocks } from './int12.js';
import { halfToFloat } from './safetensors.js';
import type { SuffixGroup } from './suffix.js';

/** How resident weights are held: SERVE_PRECISION. */
export type ResidentPrecision = 'float32' | 'float16' | 'compact';

export interface ResidentAdapter {
  readonly spec: AdapterSpec;
  /** The backbone's config it was loaded against (shared; a Swin's per-stage widths come from it). */
  readonly config: BackboneConfig;
  readonly width: number;
  readonly depth: number;
  /** Calibrated softmax temperature (see Adapter.temperature). */
  readonly temperature: number;
  /** What it is held in: as asked, except float32 where a weight is beyond float16's range (|w| > 65504; compact too). */
  readonly precision: ResidentPrecision;
  readonly weights: Uint16Array | Float32Array;
  /** compact: the head weight [d, classes]; null otherwise (it is in `weights`). */
  readonly head: Int12Blocks | null;
  /** What holding it costs the process (weights + the JS objects around them), for the cache budget. */
  readonly byteSize: number;
  readonly disposed: boolean;
  dispose(): void;
}

/**
 * V8 heap held beside the weights, measured over 300 held adapters (bench/lib/resident-cost.ts,
 * P6): the object, its spec and the typed arrays' headers ≈ 1.2–1.7 KiB, plus each label string
 * and its array slot ≈ 30 bytes + its characters (1 byte each, 2 beyond Latin-1). Rounded up.
 */
const BASE_OVERHEAD = 1536;
const labelBytes = (label: string) => {
  let wide = false;
  for (let i = 0; i < label.length && !wide; i++) wide = label.charCodeAt(i) > 0xff;
  return 32 + (wide ? 2 : 1) * label.length;
};

/** The compact head's typed arrays and their holder object. */
const HEAD_OVERHEAD = 256;

export function residentByteSize(spec: AdapterSpec, weights: Uint16Array | Float32Array, head: Int12Blocks | null = null): number {
  const labels = spec.labels.reduce((s, l) => s + labelBytes(l), 0);
  const headBytes = head ? head.packed.byteLength + head.scales.byteLength + HEAD_OVERHEAD : 0;
  return weights.byteLength + headBytes + BASE_OVERHEAD + labels;
}

/** Each read block's width (a Swin's stages are narrower than its last) and the DTL+ taps' sizes. */
function sizes(cfg: BackboneConfig, spec: AdapterSpec): { reads: Array<[number, number]>; fusions: number[] } {
  const k = spec.fusionKernel;
  const reads = [...spec.loraBeforeBlocks].sort((x, y) => x - y).map((i): [number, number] => [i, blockShape(cfg, i)[1]]);
  const fusions = k === 0 ? [] : cfg.swin ? cfg.swin.stageWidths.map((ds) => k * k * ds) : [k * k * cfg.width];
  return { reads, fusions };
}

function weightCount(cfg: BackboneConfig, spec: AdapterSpec, withHead: boolean): number {
  const { reads, fusions } = sizes(cfg, spec);
  const c = spec.labels.length;
  return reads.reduce((s, [, di]) => s + 2 * di * spec.rank, 0) + fusions.reduce((s, n) => s + n, 0) + c + (withHead ? cfg.width * c : 0);
}

/** Packs forward-layout weights into one array in the order documented above (the head weight only `withHead`). */
function pack(cfg: BackboneConfig, spec: AdapterSpec, w: AdapterWeights, withHead: boolean): Float32Array {
  const out = new Float32Array(weightCount(cfg, spec, withHead));
  let at = 0;
  const put = (a: Float32Array) => {
    out.set(a, at);
    at += a.length;
  };
  for (const i of [...w.reads.keys()].sort((x, y) => x - y)) {
    put(w.reads.get(i)!.a);
    put(w.reads.get(i)!.b);
  }
  if (w.fusion) put(w.fusion);
  for (const f of w.stageFusions ?? []) put(f);
  put(w.headB);
  if (withHead) put(w.headW);
  return out;
}

/**
 * float32 → float16 bits, round to nearest even (safetensors.ts floatToHalf, inlined over the
 * array's bits: no call or scratch write per weight); null when a weight does not fit (|w| > 65504).
 */
function toHalf(src: Float32Array): Uint16Array | null {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < bits.length; i++) {
    const x = bits[i];
    const sign = (x >>> 16) & 0x8000;
    const e = ((x >>> 23) & 0xff) - 112;
    const mant = x & 0x7fffff;
    let h: number;
    if (e >= 0x1f) return null; // beyond float16 (or not finite)
    if (e <= 0) {
      if (e < -10) h = sign;
      else {
        const m = mant | 0x800000;
        const shift = 14 - e;
        const halfway = 1 << (shift - 1);
        const rem = m & ((1 << shift) - 1);
        let r = m >>> shift;
        if (rem > halfway || (rem === halfway && r & 1)) r++;
        h = sign | r;
      }
    } else {
      let r = (e << 10) | (mant >>> 13);
      const rem = mant & 0x1fff;
      if (rem > 0x1000 || (rem === 0x1000 && r & 1)) r++;
      h = sign | r;
    }
    if ((h & 0x7c00) === 0x7c00) return null; // rounded up past 65504
    out[i] = h;
  }
  return out;
}

let halfTable: Float32Array | undefined;
/** Every float16 bit pattern's float32 value (256 KiB, made once): decoding is one lookup per weight. */
function halves(): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) halfTable[h] = halfToFloat(h);
  }
  return halfTable;
}

/** Its own function, so the loop only ever sees a Uint16Array (it runs for every adapter of every batch). */
function decodeHalves(src: Uint16Array, out: Float32Array): void {
  const table = halves();
  for (let i = 0; i < src.length; i++) out[i] = table[src[i]];
}

/**
 * Every weight as float32 in one array, in layout order with the head weight last (a fresh array,
 * except a float32 adapter's own array — read only).
 */
function asFloat32(weights: Uint16Array | Float32Array, head: Int12Blocks | null, scratch?: Float32Array): Float32Array {
  if (weights instanceof Float32Array && !head) return weights;
  const n = weights.length + (head?.length ?? 0);
  const out = scratch && scratch.length >= n ? scratch.subarray(0, n) : new Float32Array(n);
  if (weights instanceof Float32Array) out.set(weights);
  else decodeHalves(weights, out);
  if (head) decodeInt12(head, out.subarray(weights.length));
  return out;
}

export function residentFromWeights(
  cfg: BackboneConfig,
  spec: AdapterSpec,
  w: AdapterWeights,
  temperature: number,
  precision: ResidentPrecision,
): ResidentAdapter {
  const compact = precision === 'compact';
  // A weight beyond float16's range keeps the whole adapter float32 (trained adapters never get there).
  const half = precision === 'float32' ? null : toHalf(pack(cfg, spec, w, !compact));
  const weights = half ?? pack(cfg, spec, w, true);
  const head = half && compact ? encodeInt12(w.headW) : null;
  if (compact && half && !head) return residentFromWeights(cfg, spec, w, temperature, 'float32');
  let disposed = false;
  return {
    spec,
    config: cfg,
    width: cfg.width,
    depth: cfg.depth,
    temperature,
    precision: half ? precision : 'float32',
    weights,
    head,
    byteSize: residentByteSize(spec, weights, head),
    get disposed() {
      return disposed;
    },
    dispose: () => {
      disposed = true;
    },
  };
}

/** Parses, validates (loadAdapter's errors) and packs an adapter file for serving. */
export function loadResidentAdapter(bytes: Uint8Array, backbone: BackboneConfig, precision: ResidentPrecision): ResidentAdapter {
  const { spec, weights, temperature } = parseAdapterFile(bytes, backbone);
  return residentFromWeights(backbone, spec, weights, temperature, precision);
}

/**
 * The float32 weights of a resident adapter, as views into one array (forward layout): a fresh
 * one, or `scratch` when given and big enough (valid until the next decode into it).
 */
export function residentWeights(res: ResidentAdapter, scratch?: Float32Array): AdapterWeights {
  const { spec, width: d } = res;
  const r = spec.rank;
  const c = spec.labels.length;
  const all = asFloat32(res.weights, res.head, scratch);
  let at = 0;
  const take = (n: number) => all.subarray(at, (at += n));
  const { reads: readSizes, fusions } = sizes(res.config, spec);
  const reads = new Map<number, { a: Float32Array; b: Float32Array }>();
  for (const [i, di] of readSizes) reads.set(i, { a: take(di * r), b: take(r * di) });
  const taps = fusions.map((n) => take(n));
  const swin = res.config.swin !== undefined;
  const fusion = !swin && taps.length > 0 ? taps[0] : null;
  const headB = take(c);
  const headW = take(d * c);
  return { reads, fusion, ...(swin ? { stageFusions: taps.length > 0 ? taps : null } : {}), headW, headB };
}

/**
 * One decode buffer for every materialisation where the backend copies a tensor's values when
 * it is made (wasm: into its heap; cpu and tfjs-node keep the array itself, so they get a fresh
 * one each time). A fresh buffer per adapter per batch was most of materialising's cost on small
 * adapters: allocation, zero-filling and the garbage collections it brings (bench P1 on a Swin).
 */
let decodeScratch = new Float32Array(0);
function scratchFor(res: ResidentAdapter): Float32Array | undefined {
  if (res.weights instanceof Float32Array && !res.head) return undefined; // float32: views of its own array
  if (tf.getBackend() !== 'wasm') return undefined;
  const n = res.weights.length + (res.head?.length ?? 0);
  if (decodeScratch.length < n) decodeScratch = new Float32Array(Math.max(n, 2 * decodeScratch.length));
  return decodeScratch;
}

/** A float32 tensor adapter from a resident one; the caller disposes it. */
export function materialise(res: ResidentAdapter): Adapter {
  if (res.disposed) throw new AppError('internal', 'adapter has been disposed');
  // adapterFromWeights makes every tensor before returning, so the scratch is free again after it.
  const adapter = adapterFromWeights(res.config, res.spec, residentWeights(res, scratchFor(res)), false);
  adapter.temperature = res.temperature;
  return adapter;
}

export interface MaterialisedGroups {
  /** The groups with float32 tensor adapters, for forwardSuffix / engineSuffix. */
  readonly groups: SuffixGroup[];
  /** Frees every tensor made; idempotent. */
  dispose(): void;
}

/**
 * One batch's adapters as float32 tensors, made just before its forward (one per distinct
 * resident adapter, however many groups name it) and freed after it by `dispose`.
 */
export function materialiseGroups(groups: ReadonlyArray<{ adapter: ResidentAdapter; rows: number[] }>): MaterialisedGroups {
  const made = new Map<ResidentAdapter, Adapter>();
  const dispose = () => {
    for (const a of made.values()) a.dispose();
    made.clear();
  };
  try {
    const out = groups.map((g) => {
      let a = made.get(g.adapter);
      if (!a) made.set(g.adapter, (a = materialise(g.adapter)));
      return { adapter: a, rows: g.rows };
    });
    return { groups: out, dispose };
  } catch (err) {
    dispose();
    throw err;
  }
}
