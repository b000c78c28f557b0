/**
 * Which engine runs a loaded backbone's frozen forward: its NativeBackbone when one is attached,
 * tfjs otherwise. Attached by the composition roots (startBackboneEngine), read by the
 * engine-aware forward (forward-native.ts), so the code in between passes one Backbone as before.
 */
import type { Backbone } from '../backbone.js';
import { initEngine, type EngineOptions, type EnginePreference } from './engine.js';
import { NativeBackbone } from './native-backbone.js';
import { nativeFrozenBlocks, type FrozenBlocks } from './training-blocks.js';
import { WeightFiles } from './weight-files.js';

const natives = new WeakMap<Backbone, NativeBackbone>();
/** The training step's frozen blocks, built on first use (a serving runtime never asks). */
const frozen = new WeakMap<Backbone, { get(): FrozenBlocks | undefined; release(): void }>();

export function nativeOf(backbone: Backbone): NativeBackbone | undefined {
  return natives.get(backbone);
}

/** The frozen blocks a training step runs natively (forward and VJP), or undefined: tfjs gradients. */
export function frozenBlocksOf(backbone: Backbone): FrozenBlocks | undefined {
  return frozen.get(backbone)?.get();
}

/** Releases the backbone's native sessions, if any; its forward is tfjs again. */
export async function detachNative(backbone: Backbone): Promise<void> {
  const native = natives.get(backbone);
  natives.delete(backbone);
  frozen.get(backbone)?.release();
  frozen.delete(backbone);
  await native?.release();
}

/**
 * Selects the engine (engine.ts) and, for onnxruntime, builds the backbone's sessions and
 * attaches them (`segmentBytes`: their size, native-backbone.ts; tests make it small to cut a
 * small backbone into several; `weightsDir`: the folder of the memory-mapped weight files,
 * weight-files.ts — without it each session holds its own copy). Resolves with the engine in use.
 */
export async function startBackboneEngine(
  backbone: Backbone,
  pref: EnginePreference,
  options: EngineOptions & { segmentBytes?: number; weightsDir?: string },
  log: (msg: string) => void = () => {},
): Promise<'onnxruntime' | 'tfjs'> {
  if (backbone.swin && pref !== 'tfjs') {
    // The ONNX graphs (vit-graph.ts) are the ViT's; a Swin's forward stays on tfjs.
    log(`backbone engine: tfjs (BACKBONE_ENGINE=${pref}, but the onnxruntime engine runs ViT backbones only; this backbone is a Swin)`);
    return 'tfjs';
  }
  const engine = await initEngine(pref, options, log);
  if (!engine) return 'tfjs';
  await detachNative(backbone);
  const files = options.weightsDir === undefined ? undefined : WeightFiles.forBackbone(options.weightsDir, backbone.identity, backbone.config, log);
  natives.set(backbone, await NativeBackbone.create(engine, backbone, options.segmentBytes, files));
  let blocks: FrozenBlocks | undefined | null = null;
  frozen.set(backbone, {
    get: () => (blocks === null ? (blocks = nativeFrozenBlocks(engine, backbone, files)) : blocks),
    release: () => blocks?.release(),
  });
  return 'onnxruntime';
}
