/**
 * Adapter verbs besides training (services/training.ts): list and get with status and metrics,
 * versions, aliases, delete, download a version's file, and import a file trained elsewhere (the
 * authors' PyTorch code writes the same safetensors layout) after validating it against the
 * backbone this deployment serves.
 */
import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import * as adaptersRepo from '../db/repos/adapters.js';
import { storedSpecOf, type Adapter, type AdapterVersion, type Job } from '../db/schema.js';
import { AppError, isAppError } from '../errors.js';
import { JobQueue } from '../jobs/queue.js';
import { loadAdapter } from '../model/index.js';
import type { ServingEngine } from '../serve/index.js';
import type { Page } from '../db/repos/util.js';
import type { ServiceDeps, TenantCtx } from './context.js';
import { checkCountQuota, remainingBytes } from './limits.js';
import { parseAdapterName } from './names.js';
import { MAX_VERSION } from './version-resolver.js';

export type AdapterStatus = 'training' | 'ready' | 'failed' | 'empty';

export interface AdapterView {
  adapter: Adapter;
  /**
   * training: a job for it is queued or running · ready: it has a version to classify with ·
   * failed: it has no version and its last job failed or was cancelled · empty: no version, no job.
   */
  status: AdapterStatus;
  latest: AdapterVersion | null;
  versionCount: number;
  aliases: Array<{ alias: string; version: number }>;
  /** Its most recent training job. */
  lastJob: Job | null;
}

type Deps = Pick<ServiceDeps, 'database' | 'blobs' | 'log' | 'config' | 'backbone'>;

function statusOf(versions: AdapterVersion[], lastJob: Job | undefined, active: boolean): AdapterStatus {
  if (active) return 'training';
  if (versions.length > 0) return 'ready';
  if (lastJob !== undefined && (lastJob.status === 'failed' || lastJob.status === 'cancelled')) return 'failed';
  return 'empty';
}

async function view(deps: Pick<ServiceDeps, 'database'>, tenantId: string, adapter: Adapter, adapterJobs: Job[]): Promise<AdapterView> {
  const db = deps.database.db;
  const [versions, aliases] = await Promise.all([
    adaptersRepo.listVersions(db, tenantId, adapter.id),
    adaptersRepo.listAliases(db, tenantId, adapter.id),
  ]);
  const mine = adapterJobs.filter((j) => (j.payload as { adapterId?: unknown }).adapterId === adapter.id);
  const active = mine.some((j) => j.status === 'queued' || j.status === 'running');
  const latestAlias = aliases.find((a) => a.alias === adaptersRepo.LATEST);
  const latest = versions.find((v) => v.id === latestAlias?.versionId) ?? versions.at(-1) ?? null;
  return {
    adapter,
    status: statusOf(versions, mine[0], active),
    latest,
    versionCount: versions.length,
    aliases: aliases.map((a) => ({ alias: a.alias, version: a.version })),
    lastJob: mine[0] ?? null,
  };
}

export async function listAdapters({ deps, ctx, page }: { deps: Pick<ServiceDeps, 'database'>; ctx: TenantCtx; page?: Page }): Promise<AdapterView[]> {
  const adapters = await adaptersRepo.list(deps.database.db, ctx.tenantId, page);
  const allJobs = await JobQueue.of(deps).listForAdapters(ctx.tenantId, adapters.map((a) => a.id));
  return Promise.all(adapters.map((a) => view(deps, ctx.tenantId, a, allJobs)));
}

/** By id or name. */
export async function getAdapter({ deps, ctx, ref }: { deps: Pick<ServiceDeps, 'database'>; ctx: TenantCtx; ref: string }): Promise<AdapterView> {
  const adapter = await adaptersRepo.getByRef(deps.database.db, ctx.tenantId, ref);
  return view(deps, ctx.tenantId, adapter, await JobQueue.of(deps).listForAdapters(ctx.tenantId, [adapter.id]));
}

export async function listVersions({ deps, ctx, ref }: { deps: Pick<ServiceDeps, 'database'>; ctx: TenantCtx; ref: string }): Promise<{ adapter: Adapter; versions: AdapterVersion[] }> {
  const adapter = await adaptersRepo.getByRef(deps.database.db, ctx.tenantId, ref);
  return { adapter, versions: await adaptersRepo.listVersions(deps.database.db, ctx.tenantId, adapter.id) };
}

/** A version by number or alias ('latest' by default). */
export async function getVersion({ deps, ctx, ref, version }: { deps: Pick<ServiceDeps, 'database'>; ctx: TenantCtx; ref: string; version?: string }): Promise<{ adapter: Adapter; version: AdapterVersion }> {
  return adaptersRepo.resolve(deps.database.db, ctx.tenantId, ref, version ?? adaptersRepo.LATEST);
}

export async function setAlias({
  deps,
  ctx,
  ref,
  alias,
  version,
}: {
  deps: Pick<ServiceDeps, 'database'>;
  ctx: TenantCtx;
  ref: string;
  alias: string;
  version: number;
}): Promise<{ alias: string; version: number }> {
  if (!Number.isInteger(version) || version < 1 || version > MAX_VERSION) {
    throw new AppError('validation_failed', `version: a whole number from 1 to ${MAX_VERSION}`);
  }
  const adapter = await adaptersRepo.getByRef(deps.database.db, ctx.tenantId, ref);
  await adaptersRepo.setAlias(deps.database.db, ctx.tenantId, adapter.id, alias, version);
  return { alias, version };
}

export async function deleteAlias({ deps, ctx, ref, alias }: { deps: Pick<ServiceDeps, 'database'>; ctx: TenantCtx; ref: string; alias: string }): Promise<void> {
  const adapter = await adaptersRepo.getByRef(deps.database.db, ctx.tenantId, ref);
  await adaptersRepo.deleteAlias(deps.database.db, ctx.tenantId, adapter.id, alias);
}

/**
 * Delete an adapter with every version: its training jobs are cancelled, it disappears at once
 * (name free, classify fails), then its files and finally its rows go. Its versions leave this
 * process's serving engine (`engine`, when given) as soon as the adapter is hidden, and again once
 * its files are gone (a request resolved before the delete may have loaded one in between).
 */
export async function deleteAdapter({ deps, ctx, ref }: { deps: Pick<ServiceDeps, 'database' | 'blobs'> & { engine?: Pick<ServingEngine, 'evictVersions'> }; ctx: TenantCtx; ref: string }): Promise<void> {
  const db = deps.database.db;
  const adapter = await adaptersRepo.getByRef(db, ctx.tenantId, ref);
  const queue = JobQueue.of(deps);
  await queue.cancelActive(await queue.listForAdapters(ctx.tenantId, [adapter.id]), ctx.tenantId);
  const { objectKeys } = await adaptersRepo.remove(db, ctx.tenantId, adapter.id);
  const versionIds = (await adaptersRepo.listVersions(db, ctx.tenantId, adapter.id)).map((v) => v.id);
  deps.engine?.evictVersions(versionIds);
  for (const key of objectKeys) await deps.blobs.delete(key);
  deps.engine?.evictVersions(versionIds);
  await adaptersRepo.purge(db, ctx.tenantId, adapter.id);
}

export interface AdapterFile {
  adapter: Adapter;
  version: AdapterVersion;
  size: number;
  stream: Readable;
  filename: string;
}

/** A version's safetensors file as a stream. */
export async function downloadVersion({ deps, ctx, ref, version }: { deps: Pick<ServiceDeps, 'database' | 'blobs'>; ctx: TenantCtx; ref: string; version?: string }): Promise<AdapterFile> {
  const resolved = await getVersion({ deps, ctx, ref, version });
  let stream: Readable;
  try {
    stream = await deps.blobs.getStream(resolved.version.objectKey);
  } catch (err) {
    // The version row exists, so a missing file is the store's fault, not a missing object.
    if (isAppError(err) && err.code === 'not_found') {
      throw new AppError('storage_error', `the file of adapter version '${resolved.version.id}' is missing from the blob store`, { cause: err });
    }
    throw err;
  }
  return {
    ...resolved,
    size: resolved.version.byteSize,
    stream,
    filename: `${resolved.adapter.name}-v${resolved.version.version}.safetensors`,
  };
}

/** Reads a stream into memory, failing as soon as it passes `maxBytes` (adapter files are small). */
async function readLimited(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, maxBytes: number, tooLarge: () => AppError): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const chunk of source) {
    n += chunk.length;
    if (n > maxBytes) throw tooLarge();
    parts.push(Buffer.from(chunk));
  }
  return Buffer.concat(parts, n);
}

export interface ImportAdapterInput {
  /** The adapter to add the version to; created when the tenant has none by this name. */
  name: string;
  description?: string;
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
}

/** Most bytes an adapter file may have (a ViT-L head for 10k classes is ≈ 41 MB). */
export const ADAPTER_FILE_MAX_BYTES = 128 * 1024 * 1024;

/**
 * Validate a safetensors adapter against the backbone (shapes, blocks, width; 'invalid_adapter' or
 * 'adapter_backbone_mismatch'), store it, and publish it as the next version (alias 'latest').
 */
export async function importAdapter({ deps, ctx, input }: { deps: Deps; ctx: TenantCtx; input: ImportAdapterInput }): Promise<{ adapter: Adapter; version: AdapterVersion; created: boolean }> {
  const name = parseAdapterName(input.name);
  const db = deps.database.db;
  const left = await remainingBytes(deps, deps.config, ctx);
  const max = Math.min(deps.config.UPLOAD_MAX_BYTES, ADAPTER_FILE_MAX_BYTES, left);
  const bytes = await readLimited(input.source, max, () =>
    max === left
      ? new AppError('quota_exceeded', `storage quota reached: ${left} bytes left`, { details: { kind: 'bytes', limit: deps.config.QUOTA_BYTES, remaining: left } })
      : new AppError('payload_too_large', `adapter file is larger than ${max} bytes`, { details: { maxBytes: max } }),
  );
  if (bytes.length === 0) throw new AppError('invalid_adapter', 'the adapter file is empty');
  const { adapter: loaded, meta } = loadAdapter(bytes, deps.backbone.config);
  const spec = loaded.spec;
  loaded.dispose();
  // Files this service wrote name their backbone; shapes alone cannot tell two ViTs of one size apart.
  const origin = (meta.backbone as { identity?: unknown } | undefined)?.identity;
  if (typeof origin === 'string' && origin !== deps.backbone.identity) {
    throw new AppError('adapter_backbone_mismatch', 'the adapter was trained on another backbone (its recorded backbone identity differs from this one)', {
      details: { adapterBackbone: origin, backbone: deps.backbone.identity },
    });
  }

  let adapter: Adapter;
  let created = false;
  try {
    adapter = await adaptersRepo.getByName(db, ctx.tenantId, name);
  } catch (err) {
    if (!isAppError(err) || err.code !== 'not_found') throw err;
    await checkCountQuota(deps, deps.config, ctx, 'adapters');
    try {
      adapter = await adaptersRepo.create(db, ctx.tenantId, { name: name, description: input.description });
      created = true;
    } catch (e) {
      if (!isAppError(e) || e.code !== 'already_exists') throw e;
      adapter = await adaptersRepo.getByName(db, ctx.tenantId, name);
    }
  }
  const objectKey = `tenants/${ctx.tenantId}/adapters/${adapter.id}/import-${randomUUID()}.safetensors`;
  await deps.blobs.putBuffer(objectKey, bytes, { contentType: 'application/octet-stream' });
  const stored = storedSpecOf(spec);
  try {
    const { version } = await adaptersRepo.publishVersion(db, ctx.tenantId, adapter.id, {
      objectKey,
      spec: stored,
      metrics: {
        imported: { at: new Date().toISOString(), bytes: bytes.length },
        ...(typeof meta.metrics === 'object' && meta.metrics !== null ? { original: meta.metrics } : {}),
      },
      backboneId: deps.backbone.identity,
      byteSize: bytes.length,
      source: 'imported',
    });
    deps.log.info({ tenantId: ctx.tenantId, adapterId: adapter.id, version: version.version }, 'adapter imported');
    return { adapter, version, created };
  } catch (err) {
    await deps.blobs.delete(objectKey).catch(() => {});
    if (created) {
      await adaptersRepo
        .remove(db, ctx.tenantId, adapter.id)
        .then(() => adaptersRepo.purge(db, ctx.tenantId, adapter.id))
        .catch(() => {});
    }
    throw err;
  }
}
