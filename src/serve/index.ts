/** Serving: the engine and what callers of it need, from one import. */
export { ServingEngine, type ServingEngineOptions, type ClassifyRequest, type FanOutRequest, type EngineStats } from './serving-engine.js';
export { blobAdapterLoader, type AdapterLoader, type AdapterRef } from './adapter-loader.js';
export { pixelHash, type EngineImage, type ItemResult, type AdapterAnswer, type Timings } from './batch-executor.js';
export { batcherLimitsFromConfig } from './batcher.js';
export type { AdapterCacheStats } from './adapter-cache.js';
export type { BatcherStats } from './batcher.js';
export type { PrefixActivationCacheStats } from './prefix-activation-cache.js';
export { LocalExecutor, type ServeExecutor, type ExecutorStats, type PreloadResult } from './executor.js';
export type { BatchRun, EngineRequest } from './engine-types.js';
export type { BatchEntry, ItemOutcome } from './types.js';
