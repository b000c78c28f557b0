/** The model core: everything train/ and serve/ use, from one import. */
export { initBackend, type BackendPreference } from './backend.js';
export { type EnginePreference, type EngineProvider, type EngineOptions } from './native/engine.js';
export { startBackboneEngine, detachNative, nativeOf } from './native/attach.js';
export { reclaimMemory, trimHeapsInBackground, type Reclaimed } from './memory-reclaim.js';
export { enginePrefix, enginePrefixArrays, engineSuffix, enginePredict } from './native/forward-native.js';
export {
  readSafetensors,
  writeSafetensors,
  halfToFloat,
  floatToHalf,
  floatToBf16,
  type SafetensorsDtype,
  type SafetensorsTensor,
  type SafetensorsFile,
  type TensorToWrite,
  type ReadOptions,
} from './safetensors.js';
export { blockShape, sharpKernel, type BackboneConfig, type BackboneLayout, type ResampleFilter, type SwinArch } from './backbone-config.js';
export {
  loadBackboneFromFiles,
  loadBackboneFromDir,
  type Backbone,
  type BackboneFiles,
  type ShardedBackboneFiles,
  type LoadOptions,
  type BlockWeights,
} from './backbone.js';
export { loadBackbone, loadBackboneFromNpz } from './backbone-load.js';
export { settleBackboneWeights, holdsInTfjs } from './backbone-residency.js';
export { preprocessImage, decodeWithSharp, imagesToTensor, imagesToArray, type PreprocessOptions } from './preprocess.js';
export { resizePosEmbed } from './pos-embed.js';
export { ACCEPTED_IMAGE_FORMATS, IMAGE_MEDIA_TYPES, ImageTextError, decodeImageText, sniffImageFormat, type ImageFormat } from './image-format.js';
export {
  adapterSpecSchema,
  createAdapter,
  mulberry32,
  checkSpecAgainstBackbone,
  type Adapter,
  type AdapterSpec,
  type AdapterRead,
} from './adapter.js';
export { saveAdapter, loadAdapter, parseAdapterFile, type LoadedAdapter, type ParsedAdapterFile } from './adapter-file.js';
export { splitPoint, runPrefix, disposePrefix, gatherPrefix, concatPrefix, type PrefixState } from './prefix.js';
export { type SuffixGroup } from './suffix.js';
export { suffixFeatures, forwardSuffix, predictLogits, backboneFeatures } from './forward.js';
export { layerNorm, gelu, swish, attention, vitBlock, depthwiseSame } from './layers.js';
export { AdamW, type AdamWOptions, type GradientItem } from './optim.js';
export { trainStep, trainStepFullTape, type TrainStepArgs, type TrainStepResult, type TrainGroup, type GroupStepResult } from './train-step.js';
export { crossEntropy } from './loss.js';
export { measurePeakBytes } from './kernels/memory.js';
// The tfjs patches: installed by initBackend; the toggles are for tests and A/B measurements.
export {
  installWasmKernelFixes,
  uninstallWasmKernelFixes,
  wasmKernelFixesInstalled,
  installLeanGradients,
  uninstallLeanGradients,
  leanGradientsInstalled,
} from './kernels/install.js';
export { checkTfjsVersion, TFJS_PATCHED_VERSION } from './kernels/tfjs-internals.js';
export {
  loadResidentAdapter,
  residentFromWeights,
  residentWeights,
  residentByteSize,
  materialise,
  materialiseGroups,
  type ResidentAdapter,
  type ResidentPrecision,
  type MaterialisedGroups,
} from './resident-adapter.js';
