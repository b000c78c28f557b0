/**
 * Picks the engine of the frozen backbone's forward: onnxruntime-node (native CPU kernels, intra-op
 * threads) or tfjs (whatever initBackend chose). `auto` takes onnxruntime when it loads and runs a
 * one-node graph, else tfjs, and says which; `onnxruntime` fails start-up with the reason instead.
 * The adapters' maths (CSN reads, additions, heads) and every gradient stay on tfjs either way.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import type * as Ort from 'onnxruntime-node';
import { AppError } from '../../errors.js';
import { modelBytes, valueInfo } from './onnx-proto.js';
import { sessionOptions, type PerSession } from './session-options.js';
import { syncSessionFactory, type SyncSession } from './sync-session.js';

export type EnginePreference = 'auto' | 'onnxruntime' | 'tfjs';
/** onnxruntime execution providers: cuda / tensorrt need the GPU provider libraries (README: GPU nodes). */
export type EngineProvider = 'cpu' | 'cuda' | 'tensorrt';

export interface EngineOptions {
  /** Intra-op threads per session run; default: the cores this process may run on. */
  threads?: number;
  provider: EngineProvider;
  /** Intra-op threads spin between operators (ENGINE_SPIN_WAIT); default false: they sleep. */
  spinWait?: boolean;
  /** The module to load; a seam for the start-up path where it cannot load. */
  moduleName?: string;
}

export interface NativeEngine {
  readonly name: 'onnxruntime';
  readonly ort: typeof Ort;
  readonly options: Required<EngineOptions>;
  /** A session of the given ONNX model bytes with this engine's threads and provider. */
  session(model: Uint8Array, per?: PerSession): Promise<Ort.InferenceSession>;
  /** The same, run synchronously (sync-session.ts); undefined where this onnxruntime-node cannot. */
  readonly syncSession?: (model: Uint8Array, per?: PerSession) => SyncSession;
}

/** null: the tfjs engine. */
export type Engine = NativeEngine | null;

export async function initEngine(pref: EnginePreference, options: EngineOptions, log: (msg: string) => void = () => {}): Promise<Engine> {
  if (pref === 'tfjs') {
    log('backbone engine: tfjs (BACKBONE_ENGINE=tfjs)');
    return null;
  }
  const opts: Required<EngineOptions> = {
    moduleName: options.moduleName ?? 'onnxruntime-node',
    provider: options.provider,
    threads: options.threads ?? processCores(),
    spinWait: options.spinWait ?? false,
  };
  let engine: NativeEngine;
  try {
    engine = await loadEngine(opts);
  } catch (err) {
    const why = String((err as Error).message ?? err).split('\n')[0];
    if (pref === 'onnxruntime') {
      throw new AppError('config_invalid', `BACKBONE_ENGINE=onnxruntime but ${opts.moduleName} could not be used (${why})`);
    }
    log(`backbone engine: tfjs (${opts.moduleName} could not be used: ${why})`);
    return null;
  }
  log(`backbone engine: onnxruntime ${engine.ort.env.versions.node ?? ''} (${opts.provider}, ${opts.threads} thread${opts.threads === 1 ? '' : 's'}${opts.spinWait ? ', spin-waiting' : ''})`);
  return engine;
}

/**
 * The cores this process may use: its CPU affinity, capped by a cgroup CPU quota (a container's
 * CPU limit does not change the affinity; more threads than the quota only get throttled).
 */
export function processCores(readCgroup: (file: string) => string | undefined = readOptional): number {
  const cores = availableParallelism();
  const v2 = readCgroup('/sys/fs/cgroup/cpu.max')?.trim().split(/\s+/);
  const quota = v2 ? [v2[0], v2[1]] : [readCgroup('/sys/fs/cgroup/cpu/cpu.cfs_quota_us')?.trim(), readCgroup('/sys/fs/cgroup/cpu/cpu.cfs_period_us')?.trim()];
  const [q, p] = quota.map(Number);
  if (!Number.isFinite(q) || !Number.isFinite(p) || q <= 0 || p <= 0) return cores;
  return Math.max(1, Math.min(cores, Math.floor(q / p)));
}

function readOptional(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

async function loadEngine(opts: Required<EngineOptions>): Promise<NativeEngine> {
  // A variable specifier: the seam's module name is only known at run time.
  const specifier: string = opts.moduleName;
  const mod = (await import(specifier)) as typeof Ort & { default?: typeof Ort };
  const ort = mod.InferenceSession ? mod : mod.default!;
  const baseOptions: Ort.InferenceSession.SessionOptions = {
    executionProviders: opts.provider === 'cpu' ? ['cpu'] : [opts.provider, 'cpu'],
    intraOpNumThreads: opts.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    // Memory, measured on ViT-B/16 at batch 8 (README of src/model): a per-session arena (one per
    // block) kept every block's peak activations, +1.1 GB RSS; one planned buffer per run (memory
    // pattern) without the arena is a fresh mmap per run, half the speed. Plain allocations are
    // reused by malloc: the arena's speed at the tfjs path's RSS. Pre-packed MatMul weights were a
    // second copy of the weights (+~100 MB) for no measured gain.
    enableCpuMemArena: false,
    enableMemPattern: false,
    logSeverityLevel: 3,
    // Spinning pool threads hold their cores between operators: sharing two cores with the HTTP
    // thread and other executors, they made a batch-1 classify 3× slower (config.ts, ENGINE_SPIN_WAIT).
    extra: { session: { disable_prepacking: '1', intra_op: { allow_spinning: opts.spinWait ? '1' : '0' } } },
  };
  const engine: NativeEngine = {
    name: 'onnxruntime',
    ort,
    options: opts,
    session: (model, per) => ort.InferenceSession.create(model, sessionOptions(baseOptions, per)),
    syncSession: syncSessionFactory(specifier, ort, baseOptions),
  };
  // Loading the binding is not enough: run one node, so a broken install or provider fails here.
  const probe = await engine.session(
    modelBytes({ name: 'probe', nodes: [{ op: 'Relu', inputs: ['a'], outputs: ['b'] }], initializers: [], inputs: [valueInfo('a', [2])], outputs: [valueInfo('b', [2])] }, 17),
  );
  try {
    const out = await probe.run({ a: new ort.Tensor('float32', Float32Array.of(-1, 2), [2]) });
    const got = out.b.data as Float32Array;
    if (got[0] !== 0 || got[1] !== 2) throw new Error(`probe graph gave [${[...got].join(', ')}]`);
  } finally {
    await probe.release();
  }
  return engine;
}
