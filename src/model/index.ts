/** The model core: everything train/ and serve/ use, from one import. */
export { initBackend, registerWasmFriendlyGradients, type BackendPreference } from './backend.js';
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
export { type BackboneConfig, type BackboneLayout } from './backbone-config.js';
export {
  loadBackboneFromFiles,
  loadBackboneFromDir,
  type Backbone,
  type BackboneFiles,
  type BlockWeights,
} from './backbone.js';
export { preprocessImage, imagesToTensor, type PreprocessOptions } from './preprocess.js';
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
export { saveAdapter, loadAdapter, type LoadedAdapter } from './adapter-file.js';
export {
  splitPoint,
  runPrefix,
  disposePrefix,
  gatherPrefix,
  concatPrefix,
  suffixFeatures,
  forwardSuffix,
  predictLogits,
  backboneFeatures,
  checkSuffixGroups,
  type PrefixState,
  type SuffixGroup,
} from './forward.js';
export { layerNorm, gelu, swish, attention, vitBlock, depthwiseSame } from './layers.js';
export { AdamW, type AdamWOptions, type GradientItem } from './optim.js';
export { trainStep, trainStepDetailed, trainStepFullTape, measurePeakBytes, type TrainStepArgs, type TrainStepResult } from './train-step.js';
export { crossEntropy } from './loss.js';
export { blockwiseGradients, type BlockwiseResult, type BlockwiseOptions } from './train-blockwise.js';
export { installWasmKernelFixes, uninstallWasmKernelFixes, wasmKernelFixesInstalled } from './wasm-kernels.js';
export { installLeanGradients, uninstallLeanGradients, leanGradientsInstalled } from './gradients.js';
