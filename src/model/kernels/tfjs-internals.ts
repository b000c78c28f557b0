/**
 * The parts of tfjs that the patches in this folder reach although the typings keep them private
 * (or leave them out), written down once, and the guard that the installed tfjs is the release
 * they were read from. Every member below was checked against @tensorflow/tfjs-core and
 * @tensorflow/tfjs-backend-wasm 4.22.0 (engine.ts, backend_wasm.ts, the wasm module's exports);
 * another release may rename or reshape any of them without a type error here, so the installer
 * refuses to run against one (checkTfjsVersion). To move to a new tfjs: read those files again,
 * update these interfaces and the patches, bump TFJS_PATCHED_VERSION, run test/model.
 */
import * as tf from '@tensorflow/tfjs';
import { version_wasm } from '@tensorflow/tfjs-backend-wasm';
import { AppError } from '../../errors.js';

/** The tfjs release (core and wasm backend) the patches were written for. */
export const TFJS_PATCHED_VERSION = '4.22.0';

export interface TfjsVersions {
  'tfjs-core': string;
  'tfjs-backend-wasm': string;
}

export function installedTfjsVersions(): TfjsVersions {
  return { 'tfjs-core': tf.version_core, 'tfjs-backend-wasm': version_wasm };
}

/** Throws config_invalid naming each package whose version is not TFJS_PATCHED_VERSION. */
export function checkTfjsVersion(found: TfjsVersions = installedTfjsVersions()): void {
  const wrong = (Object.keys(found) as Array<keyof TfjsVersions>).filter((pkg) => found[pkg] !== TFJS_PATCHED_VERSION);
  if (wrong.length === 0) return;
  const list = wrong.map((pkg) => `@tensorflow/${pkg}: expected ${TFJS_PATCHED_VERSION}, found ${found[pkg]}`).join('; ');
  throw new AppError(
    'config_invalid',
    `the tfjs patches in src/model/kernels were written for tfjs ${TFJS_PATCHED_VERSION} and reach its private internals (${list}); ` +
      'install the pinned version (npm ci) or port the patches (src/model/kernels/README.md)',
  );
}

/** tfjs-core's Engine: public in JS, private in the typings. */
export interface EngineInternals {
  gradients: GradientsFn;
  state: { activeTape: TapeNode[] | null; gradientDepth: number };
  scopedRun<R>(start: () => void, end: () => void, f: () => R): R;
  startTape(): void;
  endTape(): void;
  tidy<T extends tf.TensorContainer>(nameOrFn: string | (() => T), fn?: () => T): T;
}

export type GradientsFn = (f: () => tf.Tensor, xs: tf.Tensor[], dy?: tf.Tensor, allowNoGradients?: boolean) => { value: tf.Tensor; grads: tf.Tensor[] };

/** One taped op (tfjs-core tape.ts TapeNode). */
export interface TapeNode {
  id: number;
  kernelName: string;
  outputs: tf.Tensor[];
  inputs: Record<string, tf.Tensor>;
  gradient?: (dys: Array<tf.Tensor | null>) => Record<string, () => tf.Tensor>;
  saved?: tf.Tensor[];
}

/** An entry of the wasm backend's buffer table (backend_wasm.ts TensorData). */
export interface BufferEntry {
  id: number;
  memoryOffset: number;
  shape: number[];
  dtype: tf.DataType;
}

/** The wasm backend's dataIdMap (a tfjs-core DataStorage). */
export interface BufferTable {
  set(dataId: object, entry: BufferEntry): void;
  get(dataId: object): BufferEntry | undefined;
  has(dataId: object): boolean;
  delete(dataId: object): boolean;
}

type HeapTensor = { shape: number[]; dtype: tf.DataType; dataId: object };
type CFunc = (...args: unknown[]) => void;

/** tfjs-backend-wasm's BackendWasm and its emscripten module, as far as the kernels use them. */
export interface WasmBackendInternals {
  wasm: {
    /** The heap (absent before the module is instantiated). */
    asm: { memory?: object };
    cwrap(name: string, ret: null, args: string[]): CFunc;
    tfjs: { registerTensor(id: number, size: number, offset: number): void; disposeData(id: number): void };
  };
  dataIdMap: BufferTable;
  dataIdNextNumber: number;
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(t: HeapTensor): Float32Array | Int32Array | Uint8Array;
  incRef(dataId: object): void;
  disposeData(dataId: object): boolean;
}

export const engineInternals = (): EngineInternals => tf.engine() as unknown as EngineInternals;
export const wasmInternals = (backend: unknown): WasmBackendInternals => backend as WasmBackendInternals;
