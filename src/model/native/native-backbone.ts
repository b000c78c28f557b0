/**
 * The frozen backbone on onnxruntime, as a few sessions that hold every weight once: the blocks
 * cut into contiguous segments of at most `segmentBytes` of weights (the patch embedding with the
 * first), one session each (vit-graph.ts `segmentModel`: each block behind an If gate). Any
 * contiguous range — the prefix at any split, one suffix block, a suffix stretch with nothing
 * between its blocks — is one run per segment it touches. The bundled backbone (1.2 MB of
 * weights) is one segment: one run per forward instead of one per block, where the per-run cost
 * (≈ 80 µs: the binding, tensor wrapping, the output copy, onnxruntime's set-up) outweighed a
 * 17-token block's arithmetic; a gate costs a few µs, taken or not. ViT-B (28 MB a block) is one
 * block a segment, as before: a session is built from one ONNX buffer that exists beside its
 * weights while onnxruntime copies them, so segments bound the load's peak memory (bench P11).
 * Activations cross as float32 arrays, rows [n, tokens, d]. With weight files (weight-files.ts)
 * the sessions map the weights instead of holding copies.
 */
import type * as Ort from 'onnxruntime-node';
import { AppError } from '../../errors.js';
import type { Backbone } from '../backbone.js';
import type { BackboneConfig } from '../backbone-config.js';
import { reclaimMemory } from '../memory-reclaim.js';
import type { NativeEngine } from './engine.js';
import { segmentModel, type Segment } from './vit-graph.js';
import type { WeightFiles } from './weight-files.js';

/** Default segment size: a ViT-B block (28 MB) stands alone; a small backbone is one segment. */
export const SEGMENT_BYTES = 32 * 2 ** 20;

export interface NativePrefix {
  /** inputs[i] = x_i for each kept i < split (all of them unless told), [n, tokens, d] each. */
  inputs: Float32Array[];
  /** Output of block split−1 (x_0 when split = 0). */
  x: Float32Array;
}

/**
 * onnxruntime's arena (session-options.ts) where every segment's activations together stay under
 * ARENA_MAX_BYTES at ARENA_ROWS rows (BATCH_MAX_SIZE's default, doubled): the bundled backbone
 * (≈ 3 MB) and a width-192 ViT (≈ 32 MB) get it, ViT-B/16 (≈ 5 GB over its twelve sessions) does not.
 */
const ARENA_ROWS = 64;
const ARENA_MAX_BYTES = 64 * 2 ** 20;

/** Whether a backbone cut into `segments` sessions runs them with onnxruntime's arena. */
export function usesArena(cfg: BackboneConfig, segments: number): boolean {
  return activationBytesPerRow(cfg) * ARENA_ROWS * segments <= ARENA_MAX_BYTES;
}

/** A block's float32 activations for one row, all held at once (an upper bound of what a run keeps live). */
export function activationBytesPerRow(cfg: BackboneConfig): number {
  const { width: d, mlpDim: m, tokens: T, heads: H } = cfg;
  return 4 * T * (3 * d + d + d + m + H * T);
}

/** Blocks grouped greedily into segments of ≤ maxBytes of float32 weights (one block at least each). */
export function segmentsOf(cfg: BackboneConfig, maxBytes: number): Segment[] {
  const { width: d, mlpDim: m, patchSize: p, tokens: T, depth } = cfg;
  const blockBytes = 4 * (4 * d * d + 4 * d + 2 * d * m + m + d + 4 * d);
  const embedBytes = 4 * (p * p * 3 * d + d + T * d);
  const segments: Segment[] = [];
  let cur: Segment = { embed: true, from: 0, to: 0 };
  let bytes = embedBytes;
  for (let i = 0; i < depth; i++) {
    if (cur.to > cur.from && bytes + blockBytes > maxBytes) {
      segments.push(cur);
      cur = { embed: false, from: i, to: i };
      bytes = 0;
    }
    cur.to = i + 1;
    bytes += blockBytes;
  }
  segments.push(cur);
  return segments;
}

interface SegmentSession {
  seg: Segment;
  session: Ort.InferenceSession;
}

export class NativeBackbone {
  private released = false;
  /** Stand-ins for the input a run does not read (`x` when it embeds, `pixels` when it does not). */
  private readonly noPixels: Ort.Tensor;
  private readonly noX: Ort.Tensor;

  private constructor(
    private readonly engine: NativeEngine,
    readonly backbone: Backbone,
    private readonly segments: SegmentSession[],
  ) {
    const { imageSize: s, tokens, width } = backbone.config;
    this.noPixels = new engine.ort.Tensor('float32', new Float32Array(s * s * 3), [1, s, s, 3]);
    this.noX = new engine.ort.Tensor('float32', new Float32Array(tokens * width), [1, tokens, width]);
  }

  /** Builds the segments' sessions one at a time, so only one segment's ONNX bytes exist at once. */
  static async create(engine: NativeEngine, backbone: Backbone, segmentBytes = SEGMENT_BYTES, files?: WeightFiles): Promise<NativeBackbone> {
    const made: SegmentSession[] = [];
    try {
      const segments = segmentsOf(backbone.config, segmentBytes);
      const arena = usesArena(backbone.config, segments.length);
      for (const seg of segments) {
        made.push({ seg, session: await engine.session(segmentModel(backbone, seg, files), { weightsDir: files?.dir, arena }) });
        // The segment's ONNX bytes, checkpoint reads and (first start) transposed weights are
        // garbage now; without this they pile up under the mapped weights (bench P11, memory-reclaim.ts).
        reclaimMemory();
      }
    } catch (err) {
      await Promise.all(made.map((s) => s.session.release()));
      throw new AppError('internal', `onnxruntime could not build the backbone's graphs: ${(err as Error).message}`);
    }
    return new NativeBackbone(engine, backbone, made);
  }

  get threads(): number {
    return this.engine.options.threads;
  }

  /** The segments' block ranges, [from, to) each (the first with the patch embedding). */
  get layout(): Array<[number, number]> {
    return this.segments.map(({ seg }) => [seg.from, seg.to]);
  }

  /**
   * Blocks from..to−1 on x_from (from pixels when `pixels` is given: x_0 = embed, from = 0): one
   * run per segment touched. Returns x_to and the block inputs x_i asked for in `keep`
   * (from ≤ i < to), in that order.
   */
  private async run(start: { pixels: Float32Array } | { x: Float32Array }, n: number, from: number, to: number, keep: readonly number[]): Promise<{ y: Float32Array; kept: Float32Array[] }> {
    if (this.released) throw new AppError('internal', 'native backbone has been released');
    const { ort } = this.engine;
    const { imageSize: s, tokens, width } = this.backbone.config;
    const wanted = new Set(keep);
    const kept = new Map<number, Float32Array>();
    let x = 'x' in start ? start.x : undefined;
    for (const { seg, session } of this.segments) {
      const lo = Math.max(seg.from, from);
      const hi = Math.min(seg.to, to);
      const embed = x === undefined && seg.embed;
      if (hi <= lo && !embed) continue;
      if (x !== undefined && wanted.has(lo)) kept.set(lo, x);
      const gates = new Uint8Array(seg.to - seg.from);
      if (hi > lo) gates.fill(1, lo - seg.from, hi - seg.from);
      const feeds: Record<string, Ort.Tensor> = {
        x: x === undefined ? this.noX : new ort.Tensor('float32', x, [n, tokens, width]),
        gates: new ort.Tensor('bool', gates, [gates.length]),
      };
      if (seg.embed) {
        feeds.pixels = embed ? new ort.Tensor('float32', (start as { pixels: Float32Array }).pixels, [n, s, s, 3]) : this.noPixels;
        feeds.embed = new ort.Tensor('bool', Uint8Array.of(embed ? 1 : 0), []);
      }
      // x_{seg.to} is `y`; a range ending inside the segment reads its end off the block inputs.
      const end = hi === seg.to ? 'y' : `x${hi}`;
      const fetch = [end];
      for (let i = embed ? lo : lo + 1; i < hi; i++) if (wanted.has(i)) fetch.push(`x${i}`);
      const out = await session.run(feeds, fetch);
      for (const name of fetch.slice(1)) kept.set(Number(name.slice(1)), out[name].data as Float32Array);
      x = out[end].data as Float32Array;
      for (const t of Object.values(out)) t.dispose();
    }
    if (x === undefined) throw new AppError('internal', `block range ${from}..${to} ran no segment`);
    return { y: x, kept: keep.map((i) => kept.get(i)!) };
  }

  /** pixels [n, S, S, 3] → x_0 [n, tokens, d]. */
  async embed(pixels: Float32Array, n: number): Promise<Float32Array> {
    this.checkPixels(pixels, n);
    return (await this.run({ pixels }, n, 0, 0, [])).y;
  }

  /** x_{i+1} = Block_i(x_i) for x [n, tokens, d]. */
  block(i: number, x: Float32Array, n: number): Promise<Float32Array> {
    return this.blocks(i, i + 1, x, n);
  }

  /** x_to from x_from [n, tokens, d]: blocks from..to−1 in one run. */
  async blocks(from: number, to: number, x: Float32Array, n: number): Promise<Float32Array> {
    const { tokens, width, depth } = this.backbone.config;
    if (!Number.isInteger(from) || !Number.isInteger(to) || from < 0 || to <= from || to > depth) {
      throw new AppError('internal', `block range ${from}..${to} is outside 0..${depth}`);
    }
    if (n < 1 || x.length !== n * tokens * width) {
      throw new AppError('internal', `block input must be ${n} × ${tokens}×${width} floats, got ${x.length}`);
    }
    return (await this.run({ x }, n, from, to, [])).y;
  }

  /**
   * x_0 and blocks 0..split−1 in one run: what runPrefix computes, as arrays. `keep` names the
   * block inputs wanted (default: every one, as runPrefix keeps).
   */
  async prefix(pixels: Float32Array, n: number, split: number, keep?: readonly number[]): Promise<NativePrefix> {
    const depth = this.backbone.config.depth;
    if (!Number.isInteger(split) || split < 0 || split > depth) {
      throw new AppError('internal', `prefix split ${split} is outside 0..${depth}`);
    }
    const wanted = keep ?? [...Array(split).keys()];
    if (wanted.some((i) => !Number.isInteger(i) || i < 0 || i >= split)) {
      throw new AppError('internal', `prefix inputs [${wanted.join(', ')}] are not all below the split ${split}`);
    }
    this.checkPixels(pixels, n);
    const out = await this.run({ pixels }, n, 0, split, wanted);
    return { inputs: out.kept, x: out.y };
  }

  private checkPixels(pixels: Float32Array, n: number): void {
    const s = this.backbone.config.imageSize;
    if (n < 1 || pixels.length !== n * s * s * 3) {
      throw new AppError('bad_request', `pixels must be ${n} × ${s}×${s}×3 floats, got ${pixels.length}`);
    }
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await Promise.all(this.segments.map((s) => s.session.release()));
  }
}
