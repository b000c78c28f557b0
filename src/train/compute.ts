/**
 * The compute of one `train` job, apart from its database work: prepared data set from the blob
 * store → `trainAdapter` (prefix fill, recipe search, epochs, evaluation, calibration) → the
 * adapter file's bytes. job.ts reads and writes the rows and publishes; this part needs only the
 * blob store and the backbone, so it can run where the database is not — in a compute thread
 * (src/threads/train-job.ts, what the server and `dtl-host worker` do) or in the calling thread
 * (`inProcessTrainCompute`: tests and embedders). Both run exactly this function, so a job trains
 * the same bits either way.
 */
import type { AdapterSpec, Backbone } from '../model/index.js';
import { saveAdapter } from '../model/index.js';
import type { BlobStore } from '../storage/index.js';
import type { Hyperparameters, Recipe } from './hyperparameters.js';
import { decodePrepared } from './ingest/index.js';
import type { CachePrecision } from './prefix-store.js';
import { backboneIdentity, trainedAdapterMetadata } from './publish.js';
import type { SearchEvent } from './search.js';
import { trainAdapter, type EpochProgress, type TrainingMetrics } from './trainer.js';

/** What a job hands its compute: plain data (it crosses to a thread by structured clone). */
export interface TrainComputeInput {
  jobId: string;
  /** Blob key of the prepared data set (checked 'ready' by the caller). */
  preparedKey: string;
  /** Parsed and validated by the caller. */
  hyperparameters: Hyperparameters;
  cacheBytes: number;
  cachePrecision?: CachePrecision;
}

/** What the compute reports as it goes; the job turns each into an event or progress row. */
export interface TrainComputeHooks {
  /** The data set is read: sizes and the backbone that will train on it. */
  started(info: { images: number; classes: number; backbone: Record<string, unknown> }): void | Promise<void>;
  epoch(p: EpochProgress): void | Promise<void>;
  search(e: SearchEvent): void | Promise<void>;
}

/** The trained adapter as its file, with what publishing records beside it. */
export interface TrainedFile {
  /** The safetensors file (`dtl` metadata included), as `dtl-host train` writes it too. */
  bytes: Uint8Array;
  spec: AdapterSpec;
  /** The recipe trained (the search's choice), not 'auto'. */
  hyperparameters: Recipe;
  metrics: TrainingMetrics;
  /** Identity of the backbone it was trained on (sha256 of its weights). */
  backboneId: string;
}

/** Runs one job's compute; rejects with the signal's reason when aborted. */
export type TrainCompute = (input: TrainComputeInput, hooks: TrainComputeHooks, signal: AbortSignal) => Promise<TrainedFile>;

export async function computeTrainedFile(
  env: { blobs: BlobStore; backbone: Backbone },
  input: TrainComputeInput,
  hooks: TrainComputeHooks,
  signal: AbortSignal,
): Promise<TrainedFile> {
  const { backbone } = env;
  const prepared = decodePrepared(await env.blobs.getBuffer(input.preparedKey));
  signal.throwIfAborted();
  await hooks.started({ images: prepared.labelIds.length, classes: prepared.labels.length, backbone: backboneIdentity(backbone) });
  const trained = await trainAdapter({
    backbone,
    dataset: prepared,
    hyperparameters: input.hyperparameters,
    cacheBytes: input.cacheBytes,
    cachePrecision: input.cachePrecision,
    signal,
    onEpoch: (p) => hooks.epoch(p),
    onSearch: (e) => hooks.search(e),
  });
  try {
    const bytes = saveAdapter(trained.adapter, trainedAdapterMetadata(backbone, trained.hyperparameters, trained.metrics));
    return { bytes, spec: trained.adapter.spec, hyperparameters: trained.hyperparameters, metrics: trained.metrics, backboneId: backbone.identity };
  } finally {
    trained.adapter.dispose();
  }
}

/** The compute on the calling thread (its tfjs heap, its event loop between batches). */
export function inProcessTrainCompute(env: { blobs: BlobStore; backbone: Backbone }): TrainCompute {
  return (input, hooks, signal) => computeTrainedFile(env, input, hooks, signal);
}
