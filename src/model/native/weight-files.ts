/**
 * The frozen backbone's large weights as files that onnxruntime memory-maps (ONNX external data),
 * instead of bytes inside each session's model buffer. onnxruntime copied a buffer's initializers
 * into its own heap, and the copies and the freed parse buffers left the heap ≈ 1.4× the weights
 * (bench P11); a mapped file is the weights once, as clean page-cache pages: shared by every
 * session that reads the same tensor (serving segments, a training step's forward and VJP
 * graphs), by every executor thread and by every process on the node that loads the same
 * backbone, and reclaimable by the kernel like any file cache.
 *
 * One folder per backbone: its identity (sha256 of its files), the image size (position
 * embeddings are interpolated per size) and LAYOUT (bump it when what a key holds changes: the
 * folder is trusted by name and size). One file per tensor, written once with an atomic rename,
 * so processes starting together never read a half-written file. Where the folder cannot be
 * written the tensor stays inline in the model bytes: slower to load and held twice, never wrong.
 */
import { mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { BackboneConfig } from '../backbone-config.js';
import { FLOAT, Msg, tensor } from './onnx-proto.js';

/** What a key's bytes mean (which prepared form of which weight); part of the folder name. */
const LAYOUT = 1;

export class WeightFiles {
  private failure: string | undefined;
  private readonly written = new Set<string>();

  private constructor(
    readonly dir: string,
    private readonly log: (msg: string) => void,
  ) {}

  /** The folder of one backbone under `root`. */
  static forBackbone(root: string, identity: string, config: BackboneConfig, log: (msg: string) => void = () => {}): WeightFiles {
    const id = identity.replace(/[^A-Za-z0-9]/g, '').slice(0, 32) || 'unnamed';
    return new WeightFiles(path.join(path.resolve(root), `${id}-s${config.imageSize}-v${LAYOUT}`), log);
  }

  /** Set when a write failed: later tensors stay inline (the reason was logged once). */
  get unavailable(): string | undefined {
    return this.failure;
  }

  /**
   * A float32 initializer named `name` in its graph whose bytes are the backbone's tensor `key`:
   * external data in `key`'s file (written now, from `data()`, unless it is there at its size), or
   * inline. Every weight goes to a file, the small ones too: a restart that finds them all reads
   * no checkpoint tensor at all (the biases would otherwise pull in their whole block).
   */
  initializer(name: string, key: string, dims: number[], data: () => Float32Array): Msg {
    if (this.failure !== undefined) return tensor(name, dims, data());
    const file = `${key.replace(/[^A-Za-z0-9_.-]/g, '_')}.bin`;
    const byteLength = 4 * dims.reduce((a, b) => a * b, 1);
    try {
      this.ensure(file, byteLength, data);
    } catch (err) {
      this.failure = String((err as Error).message ?? err);
      this.log(`engine weight files: cannot write ${this.dir} (${this.failure}); the backbone's weights stay in onnxruntime's memory`);
      return tensor(name, dims, data());
    }
    const t = new Msg();
    for (const d of dims) t.int(1, d);
    t.int(2, FLOAT).string(8, name);
    const entry = (k: string, v: string) => t.msg(13, new Msg().string(1, k).string(2, v));
    entry('location', file);
    entry('offset', '0');
    entry('length', String(byteLength));
    // data_location = EXTERNAL
    return t.int(14, 1);
  }

  private ensure(file: string, byteLength: number, values: () => Float32Array): void {
    if (this.written.has(file)) return;
    const target = path.join(this.dir, file);
    let size = -1;
    try {
      size = statSync(target).size;
    } catch {
      // not there yet
    }
    if (size !== byteLength) {
      const data = values();
      if (data.byteLength !== byteLength) throw new Error(`weight ${file} has ${data.length} values, its shape says ${byteLength / 4}`);
      mkdirSync(this.dir, { recursive: true });
      const tmp = `${target}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
      try {
        writeFileSync(tmp, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
        renameSync(tmp, target);
      } catch (err) {
        rmSync(tmp, { force: true });
        throw err;
      }
    }
    this.written.add(file);
  }
}
