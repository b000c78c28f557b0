/**
 * Publishing a trained adapter: the file goes to the blob store first, then the version row and
 * the 'latest' alias are committed in one transaction (adaptersRepo.publishVersion). A reader
 * that finds the row therefore always finds the file. A crash between the two leaves an
 * unreferenced file (never a row without a file); a retried job that had already published gets
 * the first version back and deletes its own duplicate file.
 */
import { randomUUID } from 'node:crypto';
import * as adaptersRepo from '../db/repos/adapters.js';
import type { Db } from '../db/open.js';
import { storedSpecOf, type AdapterVersion } from '../db/schema.js';
import { saveAdapter, type Adapter, type AdapterSpec, type Backbone } from '../model/index.js';
import type { BlobStore } from '../storage/index.js';
import type { Hyperparameters } from './hyperparameters.js';
import type { TrainingMetrics } from './trainer.js';

export interface PublishInput {
  db: Db;
  blobs: BlobStore;
  tenantId: string;
  adapterId: string;
  /** The training job (unique per version: a job publishes at most once). */
  jobId: string | null;
  datasetId: string | null;
  adapter: Adapter;
  backbone: Backbone;
  hyperparameters: Hyperparameters;
  metrics: TrainingMetrics;
}

/** What a client needs to know about the backbone an adapter belongs to. */
export function backboneIdentity(b: Backbone): Record<string, unknown> {
  const c = b.config;
  return { identity: b.identity, layout: c.layout, width: c.width, depth: c.depth, imageSize: c.imageSize, patchSize: c.patchSize };
}

/** The short metrics summary carried inside the adapter file (the full set lives in the version row). */
export function metricsSummary(m: TrainingMetrics): Record<string, unknown> {
  return {
    accuracy: m.evaluation.accuracy,
    evaluatedOn: m.evaluation.split,
    macroF1: m.evaluation.macroF1,
    bestEpoch: m.bestEpoch,
    bestValAccuracy: m.bestValAccuracy,
    epochsRun: m.epochsRun,
    split: m.split,
    trainableParams: m.trainableParams,
  };
}

/**
 * The `dtl` metadata of a trained adapter file: backbone identity, hyperparameters, the metrics
 * summary and the training time. The service's publish and `dtl-host train` both write it, so a
 * file is the same whichever way it was trained.
 */
export function trainedAdapterMetadata(
  backbone: Backbone,
  hyperparameters: Hyperparameters,
  metrics: TrainingMetrics,
  trainedAt: Date = new Date(),
): Record<string, unknown> {
  return {
    backbone: backboneIdentity(backbone),
    hyperparameters,
    metrics: metricsSummary(metrics),
    trainedAt: trainedAt.toISOString(),
  };
}

/** Blob key of an adapter file: under the tenant's prefix; the uuid keeps concurrent writers apart. */
export function adapterObjectKey(tenantId: string, adapterId: string, versionHint: number): string {
  return `tenants/${tenantId}/adapters/${adapterId}/v${versionHint}-${randomUUID()}.safetensors`;
}

export async function publishTrainedAdapter(input: PublishInput): Promise<{ version: AdapterVersion; created: boolean }> {
  const { adapter, backbone, metrics } = input;
  const bytes = saveAdapter(adapter, trainedAdapterMetadata(backbone, input.hyperparameters, metrics));
  return publishAdapterFile({ ...input, bytes, spec: adapter.spec, backboneId: backbone.identity });
}

/** A trained adapter that is already a file (a training thread saved it): the job's publish step. */
export interface PublishFileInput extends Omit<PublishInput, 'adapter' | 'backbone'> {
  bytes: Uint8Array;
  spec: AdapterSpec;
  backboneId: string;
}

export async function publishAdapterFile(input: PublishFileInput): Promise<{ version: AdapterVersion; created: boolean }> {
  const { db, blobs, tenantId, adapterId, spec, metrics, bytes } = input;
  // The number in the key is a hint for people browsing the store; the row holds the real one.
  const existing = await adaptersRepo.listVersions(db, tenantId, adapterId);
  const hint = existing.reduce((m, v) => Math.max(m, v.version), 0) + 1;
  const objectKey = adapterObjectKey(tenantId, adapterId, hint);
  await blobs.putBuffer(objectKey, bytes, { contentType: 'application/octet-stream' });
  const stored = storedSpecOf(spec);
  let result: { version: AdapterVersion; created: boolean };
  try {
    result = await adaptersRepo.publishVersion(db, tenantId, adapterId, {
      objectKey,
      spec: stored,
      metrics: { ...metrics, hyperparameters: input.hyperparameters },
      backboneId: input.backboneId,
      byteSize: bytes.length,
      source: 'trained',
      jobId: input.jobId,
      datasetId: input.datasetId,
    });
  } catch (err) {
    await blobs.delete(objectKey).catch(() => {});
    throw err;
  }
  if (!result.created) await blobs.delete(objectKey).catch(() => {});
  return result;
}
