/**
 * Synchronous sessions for the training step. onnxruntime-node's public `InferenceSession.run`
 * is a synchronous native call wrapped in a promise behind `setImmediate`; the training step
 * (train-step.ts) is synchronous tfjs code that pulls a frozen block's forward and VJP in the
 * middle of its gradient bookkeeping, so it calls the same native session object directly. That
 * object (the package's `dist/binding.js`) is the package's internal API: it is checked here at
 * start (a one-node graph must run) and, when it is missing or different, training keeps its
 * tfjs gradients — nothing else changes.
 */
import { createRequire } from 'node:module';
import type * as Ort from 'onnxruntime-node';
import { sessionOptions, type PerSession } from './session-options.js';
import { modelBytes, valueInfo } from './onnx-proto.js';

export interface SyncSession {
  /** Runs with float32 inputs; returns the first output's data. */
  run(inputs: Record<string, { data: Float32Array; dims: number[] }>): Float32Array;
  release(): void;
}

interface NativeSessionObject {
  loadModel(buffer: ArrayBufferLike, byteOffset: number, byteLength: number, options: object): void;
  run(feeds: Record<string, Ort.Tensor>, fetches: Record<string, null>, options: object): Record<string, { data: unknown }>;
  readonly outputMetadata: ReadonlyArray<{ name: string }>;
  dispose(): void;
}

interface Binding {
  binding: { InferenceSession: new () => NativeSessionObject };
  initOrt(): void;
}

/** A factory of synchronous sessions, or undefined where the binding is not what this expects. */
export function syncSessionFactory(
  moduleName: string,
  ort: typeof Ort,
  options: Ort.InferenceSession.SessionOptions,
): ((model: Uint8Array, per?: PerSession) => SyncSession) | undefined {
  let b: Binding;
  try {
    b = createRequire(import.meta.url)(`${moduleName}/dist/binding.js`) as Binding;
    if (typeof b.initOrt !== 'function' || typeof b.binding?.InferenceSession !== 'function') return undefined;
    b.initOrt();
  } catch {
    return undefined;
  }
  const make = (model: Uint8Array, per?: PerSession): SyncSession => {
    const session = new b.binding.InferenceSession();
    session.loadModel(model.buffer, model.byteOffset, model.byteLength, sessionOptions(options, per));
    const output = session.outputMetadata[0].name;
    let released = false;
    return {
      run(inputs) {
        if (released) throw new Error('session released');
        const feeds: Record<string, Ort.Tensor> = {};
        for (const [name, { data, dims }] of Object.entries(inputs)) feeds[name] = new ort.Tensor('float32', data, dims);
        const out = session.run(feeds, { [output]: null }, {})[output];
        if (!(out?.data instanceof Float32Array)) throw new Error(`output '${output}' is not float32`);
        return out.data;
      },
      release() {
        if (released) return;
        released = true;
        session.dispose();
      },
    };
  };
  try {
    const probe = make(probeModel());
    try {
      const got = probe.run({ a: { data: Float32Array.of(-1, 2), dims: [2] } });
      if (got[0] !== 0 || got[1] !== 2) return undefined;
    } finally {
      probe.release();
    }
  } catch {
    return undefined;
  }
  return make;
}

/** relu([−1, 2]) = [0, 2]: the same probe engine.ts runs through the public API. */
function probeModel(): Uint8Array {
  return modelBytes({ name: 'probe', nodes: [{ op: 'Relu', inputs: ['a'], outputs: ['b'] }], initializers: [], inputs: [valueInfo('a', [2])], outputs: [valueInfo('b', [2])] }, 17);
}
