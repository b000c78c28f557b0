/**
 * What every compute thread starts with: the configuration it was handed (the parent's
 * environment), a logger, the blob store, the tfjs backend with this project's kernels, the
 * configured backbone and its engine (onnxruntime sessions or tfjs). The same steps as the main
 * thread's composition root, so a thread computes exactly what the process would. A `hf:` backbone
 * is read from the blob store, where the main thread pulled it before starting any thread.
 */
import { engineOptions, loadConfig, type Config } from '../config.js';
import { createLogger, type Logger } from '../log.js';
import { detachNative, initBackend, settleBackboneWeights, startBackboneEngine, type Backbone } from '../model/index.js';
import { loadConfiguredBackbone } from '../services/backbone.js';
import { openBlobStore, type BlobStore } from '../storage/index.js';

export interface ComputeRuntime {
  readonly config: Config;
  readonly log: Logger;
  readonly blobs: BlobStore;
  readonly backbone: Backbone;
  readonly backend: string;
  readonly engine: 'onnxruntime' | 'tfjs';
  /** Releases the engine's sessions, the backbone's tensors and the blob store; idempotent. */
  close(): Promise<void>;
}

export interface ComputeRuntimeOptions {
  /** Log bindings (e.g. { thread: 'serve-1' }). */
  bindings?: Record<string, unknown>;
  /**
   * What the thread runs the frozen backbone for. 'serve': the forward only, so with onnxruntime
   * the weights are held once, by its sessions (model/backbone-residency.ts); 'train' (default):
   * the suffix is trained through on tfjs, so the weights are held in tfjs too.
   */
  role?: 'serve' | 'train';
}

/** `env`: the environment the parent process was configured from (process.env as it was parsed). */
export async function startComputeRuntime(env: Record<string, string | undefined>, options: ComputeRuntimeOptions = {}): Promise<ComputeRuntime> {
  const bindings = options.bindings ?? {};
  const config = loadConfig(env);
  const log = createLogger(config.LOG_LEVEL, bindings);
  const backend = await initBackend(config.TFJS_BACKEND, (m) => log.debug(m));
  const blobs = await openBlobStore(config);
  let backbone: Backbone | undefined;
  try {
    backbone = await loadConfiguredBackbone(config, blobs, {}, { deferResidency: true });
    const engine = await startBackboneEngine(backbone, config.BACKBONE_ENGINE, engineOptions(config), (m) => log.debug(m));
    settleBackboneWeights(backbone, engine === 'onnxruntime' && options.role === 'serve' ? 'native' : 'tfjs');
    let closing: Promise<void> | undefined;
    const loaded = backbone;
    return {
      config,
      log,
      blobs,
      backbone: loaded,
      backend,
      engine,
      close: () =>
        (closing ??= (async () => {
          await detachNative(loaded);
          loaded.dispose();
          await blobs.close();
        })()),
    };
  } catch (err) {
    backbone?.dispose();
    await blobs.close();
    throw err;
  }
}
