/**
 * The training prefix store: the shared-prefix rows of one training run (not to be confused with
 * the serving side's `PrefixActivationCache`, an LRU across requests). Blocks before the first addition never depend on a
 * trainable weight, so an image's prefix state (the block inputs the CSN reads, plus the output of
 * the last prefix block) is the same in every epoch: it is computed once, outside any gradient
 * tape, and every later epoch builds its batches from stored rows.
 *
 * Rows live in plain typed arrays on the JS heap — never in the wasm heap, which tops out near
 * 4 GiB and never shrinks — either as float32 or as IEEE half floats (Uint16Array, half the
 * memory). The byte budget is a hard bound: rows that do not fit are recomputed whenever they are
 * needed (still correct, counted as computations). In half mode every row, stored or not, goes
 * through the same rounding, so the numbers a batch sees never depend on the budget.
 *
 * Each slot has its block's shape (`blockShape`): on a ViT every slot is tokens × d; on a Swin a
 * read block's input has its stage's tokens × width, and the prefix output that of block split−1.
 */
import * as tf from '@tensorflow/tfjs';
import { AppError } from '../errors.js';
import { blockShape, enginePrefixArrays, floatToHalf, halfToFloat, type Backbone, type PrefixState } from '../model/index.js';

export type CachePrecision = 'float32' | 'float16';

export interface TrainingPrefixStoreOptions {
  backbone: Backbone;
  /** Prefix split (first block an adapter changes, plus one). */
  split: number;
  /** Blocks whose inputs the CSN reads; only those below `split` are stored. */
  readBlocks: readonly number[];
  budgetBytes: number;
  precision: CachePrecision;
  /** Normalised pixels [S·S·3] of a row key. */
  pixels(key: number): Float32Array;
  /** Images per prefix forward when filling (bounds the transient wasm memory). */
  chunk?: number;
}

export interface TrainingPrefixStoreStats {
  precision: CachePrecision;
  budgetBytes: number;
  /** Bytes of one stored row at this precision. */
  rowBytes: number;
  storedRows: number;
  storedBytes: number;
  /** Rows whose prefix was run through the backbone (first sight, or overflow every time). */
  computed: number;
  /** Rows served from the cache without touching the backbone. */
  hits: number;
  /** Rows that did not fit the budget (at first sight). */
  overflowRows: number;
  /** Half-precision rows with a value beyond ±65504, kept as float32 instead. */
  float32Fallbacks: number;
}

const HALF_MAX = 65504;
let halfTable: Float32Array | undefined;

/** All 65536 half values decoded once: decoding a row is then a table lookup per value. */
function halfLut(): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) halfTable[h] = halfToFloat(h);
  }
  return halfTable;
}

export class TrainingPrefixStore {
  private readonly rows = new Map<number, Float32Array | Uint16Array>();
  /** Slot s holds the input of block slotBlocks[s]; the last slot holds x (the prefix output). */
  private readonly slotBlocks: number[];
  /** [tokens, width] of each slot, and where each slot starts in a row (floats). */
  private readonly slotShapes: [number, number][];
  private readonly slotOffsets: number[];
  private readonly floatsPerRow: number;
  private readonly chunk: number;
  private readonly counters = { computed: 0, hits: 0, overflowRows: 0, float32Fallbacks: 0, storedBytes: 0 };

  constructor(private readonly opts: TrainingPrefixStoreOptions) {
    const cfg = opts.backbone.config;
    if (!Number.isInteger(opts.split) || opts.split < 1 || opts.split > cfg.depth) {
      throw new AppError('internal', `prefix store split ${opts.split} is outside 1..${cfg.depth}`);
    }
    this.slotBlocks = [...new Set(opts.readBlocks)].filter((b) => b < opts.split).sort((a, b) => a - b);
    // Blocks keep their input's shape, so the prefix output x has block split−1's shape.
    this.slotShapes = [...this.slotBlocks.map((b) => blockShape(cfg, b)), blockShape(cfg, opts.split - 1)];
    this.slotOffsets = [];
    let at = 0;
    for (const [t, w] of this.slotShapes) {
      this.slotOffsets.push(at);
      at += t * w;
    }
    this.floatsPerRow = at;
    this.chunk = Math.max(1, opts.chunk ?? 16);
  }

  private get slots(): number {
    return this.slotBlocks.length + 1;
  }

  get rowFloats(): number {
    return this.floatsPerRow;
  }

  private slotFloats(s: number): number {
    return this.slotShapes[s][0] * this.slotShapes[s][1];
  }

  get rowBytes(): number {
    return this.rowFloats * (this.opts.precision === 'float16' ? 2 : 4);
  }

  stats(): TrainingPrefixStoreStats {
    return {
      precision: this.opts.precision,
      budgetBytes: this.opts.budgetBytes,
      rowBytes: this.rowBytes,
      storedRows: this.rows.size,
      storedBytes: this.counters.storedBytes,
      computed: this.counters.computed,
      hits: this.counters.hits,
      overflowRows: this.counters.overflowRows,
      float32Fallbacks: this.counters.float32Fallbacks,
    };
  }

  /** Drops every row (the arrays become garbage). */
  clear(): void {
    this.rows.clear();
    this.counters.storedBytes = 0;
  }

  /** Rounds a computed row as storage would, and stores it if it fits the budget. */
  private admit(key: number, row: Float32Array, firstSight: boolean): Float32Array {
    let stored: Float32Array | Uint16Array = row;
    let used = row;
    if (this.opts.precision === 'float16') {
      let finite = true;
      for (let i = 0; i < row.length; i++) {
        if (!(Math.abs(row[i]) <= HALF_MAX)) {
          finite = false;
          break;
        }
      }
      if (finite) {
        const half = new Uint16Array(row.length);
        const lut = halfLut();
        used = new Float32Array(row.length);
        for (let i = 0; i < row.length; i++) {
          half[i] = floatToHalf(row[i]);
          used[i] = lut[half[i]];
        }
        stored = half;
      } else if (firstSight) {
        this.counters.float32Fallbacks++;
      }
    }
    if (this.counters.storedBytes + stored.byteLength <= this.opts.budgetBytes) {
      this.rows.set(key, stored);
      this.counters.storedBytes += stored.byteLength;
    } else if (firstSight) {
      this.counters.overflowRows++;
    }
    return used;
  }

  private readRow(stored: Float32Array | Uint16Array, out: Float32Array[], pos: number): void {
    const lut = stored instanceof Uint16Array ? halfLut() : undefined;
    for (let s = 0; s < this.slots; s++) {
      const dst = out[s];
      const size = this.slotFloats(s);
      const base = pos * size;
      const src = this.slotOffsets[s];
      if (lut) for (let i = 0; i < size; i++) dst[base + i] = lut[stored[src + i]];
      else dst.set((stored as Float32Array).subarray(src, src + size), base);
    }
  }

  /** Runs the prefix for rows not in the cache, `chunk` images at a time, yielding in between. */
  private async computeMissing(keys: number[], seen: Set<number>): Promise<Map<number, Float32Array>> {
    const fresh = new Map<number, Float32Array>();
    for (let start = 0; start < keys.length; start += this.chunk) {
      const part = keys.slice(start, start + this.chunk);
      // On the backbone's engine (onnxruntime when attached): the fill is the frozen forward only.
      const out = await enginePrefixArrays(this.opts.backbone, part.map((k) => this.opts.pixels(k)), this.opts.split, this.slotBlocks);
      const slotData = [...out.inputs, out.x];
      part.forEach((k, i) => {
        const row = new Float32Array(this.rowFloats);
        slotData.forEach((d, s) => row.set(d.subarray(i * this.slotFloats(s), (i + 1) * this.slotFloats(s)), this.slotOffsets[s]));
        fresh.set(k, this.admit(k, row, !seen.has(k)));
      });
      this.counters.computed += part.length;
      if (start + this.chunk < keys.length) await new Promise((r) => setImmediate(r));
    }
    return fresh;
  }

  private readonly seenKeys = new Set<number>();

  /**
   * The prefix state of rows `keys` (in order; may repeat), as new tensors the caller disposes
   * (disposePrefix). Inputs of blocks the CSN does not read are empty [n, 0, d] placeholders: the
   * suffix only reads the inputs of read blocks, and storing the others would waste the budget.
   */
  async batch(keys: number[]): Promise<PrefixState> {
    if (keys.length === 0) throw new AppError('internal', 'prefix store: empty batch');
    const missing = [...new Set(keys.filter((k) => !this.rows.has(k)))];
    const fresh = missing.length > 0 ? await this.computeMissing(missing, this.seenKeys) : new Map<number, Float32Array>();
    for (const k of missing) this.seenKeys.add(k);
    const n = keys.length;
    const out = Array.from({ length: this.slots }, (_, s) => new Float32Array(n * this.slotFloats(s)));
    keys.forEach((k, pos) => {
      const row = fresh.get(k);
      if (row) this.readRow(row, out, pos);
      else {
        this.readRow(this.rows.get(k)!, out, pos);
        this.counters.hits++;
      }
    });
    const cfg = this.opts.backbone.config;
    return tf.tidy(() => {
      const bySlot = out.map((data, s) => tf.keep(tf.tensor3d(data, [n, ...this.slotShapes[s]])));
      const inputs: tf.Tensor3D[] = [];
      for (let b = 0; b < this.opts.split; b++) {
        const s = this.slotBlocks.indexOf(b);
        inputs.push(s >= 0 ? bySlot[s] : tf.keep(tf.zeros([n, 0, blockShape(cfg, b)[1]]) as tf.Tensor3D));
      }
      return { inputs, x: bySlot[bySlot.length - 1], split: this.opts.split };
    });
  }
}
