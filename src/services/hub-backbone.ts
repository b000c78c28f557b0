/**
 * `BACKBONE=hf:<org>/<name>[@revision]`: the backbone's files pulled once from a model hub into
 * the blob store, then read from there by every process that shares the store (API replicas,
 * workers, the CLI) without touching the network.
 *
 * Layout in the blob store:
 *   backbones/sha256/<hex>                          each file, named by the sha256 of its bytes
 *   backbones/hf/<org>/<name>/<revision>.json       the manifest: which file is which, written last
 * A file object is only ever put whole (the store's puts are atomic) after its download was
 * checked against the hub's size and hash, and the manifest only after all of them, so a pull
 * that fails anywhere leaves no backbone a reader could load — only whole, verified files that
 * the next attempt reuses instead of downloading again. A cached revision is used as it is; pull
 * with `force` to look at the hub again (a branch may have moved).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { AppError } from '../errors.js';
import type { BackboneFiles, ShardedBackboneFiles } from '../model/index.js';
import type { BlobStore } from '../storage/index.js';
import { HubClient, parseHubSpec, type DownloadProgress, type HubFile, type HubSpec } from './hub-client.js';

const manifestSchema = z.object({
  spec: z.string(),
  repo: z.string(),
  revision: z.string(),
  commit: z.string().optional(),
  endpoint: z.string(),
  pulledAt: z.string(),
  files: z.array(z.object({ name: z.string(), size: z.number().int().nonnegative(), sha256: z.string().regex(/^[0-9a-f]{64}$/) })).min(2),
});
export type HubManifest = z.infer<typeof manifestSchema>;

export const manifestKey = (spec: HubSpec): string => `backbones/hf/${spec.repo}/${encodeURIComponent(spec.revision)}.json`;
export const fileKey = (sha256: string): string => `backbones/sha256/${sha256}`;

const SINGLE = 'model.safetensors';
const INDEX = 'model.safetensors.index.json';

export interface PullOptions {
  blobs: BlobStore;
  client: HubClient;
  /** A folder for downloads in progress (removed afterwards). */
  tmpDir: string;
  /** Ask the hub even when the blob store already holds this revision. */
  force?: boolean;
  onProgress?: (p: DownloadProgress) => void;
  /** One line per file fetched or reused. */
  onFile?: (event: { file: string; size: number | undefined; action: 'download' | 'reuse' }) => void;
}

export interface PullResult {
  manifest: HubManifest;
  /** false: the blob store already had it and the hub was not asked. */
  pulled: boolean;
}

async function readManifest(blobs: BlobStore, spec: HubSpec): Promise<HubManifest | undefined> {
  let bytes: Buffer;
  try {
    bytes = await blobs.getBuffer(manifestKey(spec));
  } catch (err) {
    if (err instanceof AppError && err.code === 'not_found') return undefined;
    throw err;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch {
    parsed = undefined;
  }
  const m = manifestSchema.safeParse(parsed);
  if (!m.success) throw new AppError('invalid_backbone', `blob '${manifestKey(spec)}' is not a backbone manifest; delete it and pull again`);
  return m.data;
}

/** The shard names an index's weight_map lists, in first-seen order. */
function shardsOf(index: Buffer, url: string): string[] {
  let weightMap: unknown;
  try {
    weightMap = (JSON.parse(index.toString('utf8')) as { weight_map?: unknown }).weight_map;
  } catch {
    weightMap = undefined;
  }
  if (typeof weightMap !== 'object' || weightMap === null) throw new AppError('invalid_backbone', `${url} has no weight_map`);
  const names = [...new Set(Object.values(weightMap as Record<string, unknown>))];
  if (names.length === 0 || !names.every((n) => typeof n === 'string' && /^[A-Za-z0-9._-]+\.safetensors$/.test(n))) {
    throw new AppError('invalid_backbone', `${url}: weight_map must name .safetensors shards in the same folder`);
  }
  return names as string[];
}

/** Downloads (or finds already stored) one file; returns its manifest entry. */
async function fetchFile(file: HubFile, opts: PullOptions, work: string): Promise<HubManifest['files'][number]> {
  const { blobs } = opts;
  if (file.sha256 !== undefined) {
    const have = await blobs.head(fileKey(file.sha256));
    if (have !== null && (file.size === undefined || have.size === file.size)) {
      opts.onFile?.({ file: file.name, size: have.size, action: 'reuse' });
      return { name: file.name, size: have.size, sha256: file.sha256 };
    }
  }
  opts.onFile?.({ file: file.name, size: file.size, action: 'download' });
  const dest = path.join(work, file.name.replace(/[^A-Za-z0-9._-]/g, '_'));
  const sha256 = await opts.client.download(file, dest, opts.onProgress);
  try {
    const { size } = await stat(dest);
    await blobs.putStream(fileKey(sha256), createReadStream(dest), size, { contentType: 'application/octet-stream' });
    return { name: file.name, size, sha256 };
  } finally {
    await rm(dest, { force: true });
  }
}

/** Makes sure the blob store holds the backbone `spec` names; downloads what it lacks. */
export async function pullHubBackbone(specText: string, opts: PullOptions): Promise<PullResult> {
  const spec = parseHubSpec(specText);
  if (!opts.force) {
    const cached = await readManifest(opts.blobs, spec);
    if (cached) return { manifest: cached, pulled: false };
  }
  const { client } = opts;
  await mkdir(opts.tmpDir, { recursive: true });
  const work = await mkdtemp(path.join(opts.tmpDir, 'hub-'));
  try {
    const config = (await client.head(spec, 'config.json'))!;
    const preprocessor = await client.head(spec, 'preprocessor_config.json', { optional: true });
    const single = await client.head(spec, SINGLE, { optional: true });
    const files = [await fetchFile(config, opts, work)];
    if (preprocessor) files.push(await fetchFile(preprocessor, opts, work));
    if (single) {
      files.push(await fetchFile(single, opts, work));
    } else {
      const index = await client.head(spec, INDEX, { optional: true });
      if (!index) {
        throw new AppError('invalid_backbone', `${client.fileUrl(spec, SINGLE)} not found (HTTP 404), nor ${INDEX}: ${spec.repo}@${spec.revision} has no safetensors weights`);
      }
      const entry = await fetchFile(index, opts, work);
      files.push(entry);
      const shards = shardsOf(await opts.blobs.getBuffer(fileKey(entry.sha256)), index.url);
      for (const shard of shards) files.push(await fetchFile((await client.head(spec, shard))!, opts, work));
    }
    const manifest: HubManifest = {
      spec: `hf:${spec.repo}@${spec.revision}`,
      repo: spec.repo,
      revision: spec.revision,
      commit: config.commit,
      endpoint: client.endpoint,
      pulledAt: new Date().toISOString(),
      files,
    };
    await opts.blobs.putBuffer(manifestKey(spec), Buffer.from(`${JSON.stringify(manifest, null, 1)}\n`), { contentType: 'application/json' });
    return { manifest, pulled: true };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The backbone's files from the blob store, each checked against the manifest's size and sha256. */
export async function readHubBackbone(manifest: HubManifest, blobs: BlobStore): Promise<BackboneFiles | ShardedBackboneFiles> {
  const get = async (entry: HubManifest['files'][number]): Promise<Buffer> => {
    const key = fileKey(entry.sha256);
    let bytes: Buffer;
    try {
      bytes = await blobs.getBuffer(key);
    } catch (err) {
      if (err instanceof AppError && err.code === 'not_found') {
        throw new AppError('invalid_backbone', `backbone ${manifest.spec}: '${entry.name}' (blob '${key}') is missing from the blob store; pull it again`);
      }
      throw err;
    }
    if (bytes.length !== entry.size || createHash('sha256').update(bytes).digest('hex') !== entry.sha256) {
      throw new AppError('invalid_backbone', `backbone ${manifest.spec}: blob '${key}' ('${entry.name}') does not match its sha256; pull it again`);
    }
    return bytes;
  };
  const byName = new Map(manifest.files.map((f) => [f.name, f]));
  const need = (name: string) => {
    const f = byName.get(name);
    if (!f) throw new AppError('invalid_backbone', `backbone ${manifest.spec}: the manifest lists no '${name}'`);
    return f;
  };
  const config = await get(need('config.json'));
  const pre = byName.get('preprocessor_config.json');
  const preprocessor = pre ? await get(pre) : undefined;
  if (byName.has(SINGLE)) return { model: await get(need(SINGLE)), config, preprocessor };
  const shards = shardsOf(await get(need(INDEX)), `${manifest.spec} ${INDEX}`);
  const parts: Uint8Array[] = [];
  for (const shard of shards) parts.push(await get(need(shard)));
  return { shards: parts, config, preprocessor };
}

