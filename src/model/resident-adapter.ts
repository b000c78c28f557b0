/**
 * The serving cache's form of an adapter: every weight (CSN reads, DTL+ taps, head) in ONE plain
 * typed array outside the tfjs backend — float16 bits in a Uint16Array by default, or float32 —
 * and float32 tensors made from it only for the batch that uses it (`materialiseGroups`), then
 * freed. tfjs has no float16 dtype (wasm cannot hold one), and a loaded `Adapter` is ~26 small
 * tensors, each with its JS objects (≈ 15 KiB per ViT-B adapter) besides its wasm bytes; this form
 * is the weights plus one object. Measured costs and the float16 error are in README.md.
 *
 * Layout of `weights` (forward layout, as adapter.ts): per read block in ascending order A [d, r]
 * then B [r, d]; the DTL+ taps [k·k, d] if any; head weight [d, classes]; head bias [classes].
 */
import { AppError } from '../errors.js';
import { adapterFromWeights, type Adapter, type AdapterSpec, type AdapterWeights } from './adapter.js';
import { parseAdapterFile } from './adapter-file.js';
import type { BackboneConfig } from './backbone-config.js';
import { floatToHalf, halfToFloat } from './safetensors.js';
import type { SuffixGroup } from './suffix.js';

/** How resident weights are held: SERVE_PRECISION. */
export type ResidentPrecision = 'float32' | 'float16';

export interface ResidentAdapter {
  readonly spec: AdapterSpec;
  readonly width: number;
  readonly depth: number;
  /** Calibrated softmax temperature (see Adapter.temperature). */
  readonly temperature: number;
  /** What it is held in: float16 unless asked for float32 or a weight is beyond float16's range. */
  readonly precision: ResidentPrecision;
  readonly weights: Uint16Array | Float32Array;
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

export function residentByteSize(spec: AdapterSpec, weights: Uint16Array | Float32Array): number {
  return weights.byteLength + BASE_OVERHEAD + spec.labels.reduce((s, l) => s + labelBytes(l), 0);
}

function weightCount(spec: AdapterSpec, d: number): number {
  const k = spec.fusionKernel;
  const c = spec.labels.length;
  return spec.loraBeforeBlocks.length * 2 * d * spec.rank + (k > 0 ? k * k * d : 0) + d * c + c;
}

/** Packs forward-layout weights into one array in the order documented above. */
function pack(spec: AdapterSpec, d: number, w: AdapterWeights): Float32Array {
  const out = new Float32Array(weightCount(spec, d));
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
  put(w.headW);
  put(w.headB);
  return out;
}

/** float32 → float16 bits (round to nearest even); null when a finite weight would not fit (|w| > 65504). */
function toHalf(src: Float32Array): Uint16Array | null {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const h = floatToHalf(src[i]);
    if ((h & 0x7c00) === 0x7c00) return null;
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

/** The weights as float32 (a fresh array for float16; the array itself for float32 — read only). */
function asFloat32(weights: Uint16Array | Float32Array): Float32Array {
  if (weights instanceof Float32Array) return weights;
  const table = halves();
  const out = new Float32Array(weights.length);
  for (let i = 0; i < weights.length; i++) out[i] = table[weights[i]];
  return out;
}

export function residentFromWeights(
  cfg: Pick<BackboneConfig, 'width' | 'depth'>,
  spec: AdapterSpec,
  w: AdapterWeights,
  temperature: number,
  precision: ResidentPrecision,
): ResidentAdapter {
  const all = pack(spec, cfg.width, w);
  const weights = precision === 'float16' ? (toHalf(all) ?? all) : all;
  let disposed = false;
  return {
    spec,
    width: cfg.width,
    depth: cfg.depth,
    temperature,
    precision: weights instanceof Uint16Array ? 'float16' : 'float32',
    weights,
    byteSize: residentByteSize(spec, weights),
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

/** The float32 weights of a resident adapter, as views into one array (forward layout). */
export function residentWeights(res: ResidentAdapter): AdapterWeights {
  const { spec, width: d } = res;
  const r = spec.rank;
  const k = spec.fusionKernel;
  const c = spec.labels.length;
  const all = asFloat32(res.weights);
  let at = 0;
  const take = (n: number) => all.subarray(at, (at += n));
  const reads = new Map<number, { a: Float32Array; b: Float32Array }>();
  for (const i of [...spec.loraBeforeBlocks].sort((x, y) => x - y)) reads.set(i, { a: take(d * r), b: take(r * d) });
  const fusion = k > 0 ? take(k * k * d) : null;
  const headW = take(d * c);
  const headB = take(c);
  return { reads, fusion, headW, headB };
}

/** A float32 tensor adapter from a resident one; the caller disposes it. */
export function materialise(res: ResidentAdapter): Adapter {
  if (res.disposed) throw new AppError('internal', 'adapter has been disposed');
  const adapter = adapterFromWeights(res, res.spec, residentWeights(res), false);
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
