/**
 * The frozen backbone on onnxruntime: one session for the patch embedding and one per block, built
 * from the loaded backbone's weights (vit-graph.ts). Activations cross as float32 arrays, rows
 * [n, tokens, d]; a prefix of any split and each suffix block are chains of the same sessions.
 */
import type * as Ort from 'onnxruntime-node';
import { AppError } from '../../errors.js';
import type { Backbone } from '../backbone.js';
import type { NativeEngine } from './engine.js';
import { blockModel, embedModel } from './vit-graph.js';

export interface NativePrefix {
  /** inputs[i] = x_i for i < split, [n, tokens, d] each. */
  inputs: Float32Array[];
  /** Output of block split−1 (x_0 when split = 0). */
  x: Float32Array;
}

export class NativeBackbone {
  private released = false;

  private constructor(
    private readonly engine: NativeEngine,
    readonly backbone: Backbone,
    private readonly embedSession: Ort.InferenceSession,
    private readonly blockSessions: Ort.InferenceSession[],
  ) {}

  /** Builds every session (one at a time, so only one block's ONNX bytes exist at once). */
  static async create(engine: NativeEngine, backbone: Backbone): Promise<NativeBackbone> {
    const sessions: Ort.InferenceSession[] = [];
    try {
      sessions.push(await engine.session(embedModel(backbone)));
      for (let i = 0; i < backbone.config.depth; i++) sessions.push(await engine.session(blockModel(backbone, i)));
    } catch (err) {
      await Promise.all(sessions.map((s) => s.release()));
      throw new AppError('internal', `onnxruntime could not build the backbone's graphs: ${(err as Error).message}`);
    }
    return new NativeBackbone(engine, backbone, sessions[0], sessions.slice(1));
  }

  get threads(): number {
    return this.engine.options.threads;
  }

  private async run(session: Ort.InferenceSession, name: string, data: Float32Array, dims: number[]): Promise<Float32Array> {
    if (this.released) throw new AppError('internal', 'native backbone has been released');
    const out = await session.run({ [name]: new this.engine.ort.Tensor('float32', data, dims) });
    const t = out[session.outputNames[0]];
    const result = t.data as Float32Array;
    t.dispose();
    return result;
  }

  /** pixels [n, S, S, 3] → x_0 [n, tokens, d]. */
  embed(pixels: Float32Array, n: number): Promise<Float32Array> {
    const s = this.backbone.config.imageSize;
    if (n < 1 || pixels.length !== n * s * s * 3) {
      throw new AppError('bad_request', `pixels must be ${n} × ${s}×${s}×3 floats, got ${pixels.length}`);
    }
    return this.run(this.embedSession, 'pixels', pixels, [n, s, s, 3]);
  }

  /** x_{i+1} = Block_i(x_i) for x [n, tokens, d]. */
  block(i: number, x: Float32Array, n: number): Promise<Float32Array> {
    const { tokens, width } = this.backbone.config;
    return this.run(this.blockSessions[i], 'x', x, [n, tokens, width]);
  }

  /** x_0 and blocks 0..split−1: what runPrefix computes, as arrays. */
  async prefix(pixels: Float32Array, n: number, split: number): Promise<NativePrefix> {
    const depth = this.backbone.config.depth;
    if (!Number.isInteger(split) || split < 0 || split > depth) {
      throw new AppError('internal', `prefix split ${split} is outside 0..${depth}`);
    }
    const inputs: Float32Array[] = [];
    let x = await this.embed(pixels, n);
    for (let i = 0; i < split; i++) {
      inputs.push(x);
      x = await this.block(i, x, n);
    }
    return { inputs, x };
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await Promise.all([this.embedSession, ...this.blockSessions].map((s) => s.release()));
  }
}
