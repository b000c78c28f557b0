/**
 * Where the configured backbone comes from: a local folder (or a Google ViT `.npz`), `blob:<key prefix>` in the blob
 * store (so every replica of a fleet can read one copy from S3), or `hf:<org>/<name>[@revision]`
 * (pulled once from the model hub into the blob store, hub-backbone.ts). Used by the server and
 * the CLI.
 */
import path from 'node:path';
import type { Config } from '../config.js';
import { AppError } from '../errors.js';
import type { Logger } from '../log.js';
import { loadBackbone, loadBackboneFromFiles, type Backbone, type LoadOptions } from '../model/index.js';
import type { BlobStore } from '../storage/index.js';
import { pullHubBackbone, readHubBackbone, type PullOptions, type PullResult } from './hub-backbone.js';
import { HubClient, isHubSpec } from './hub-client.js';

export type BackboneSourceConfig = Pick<Config, 'BACKBONE' | 'BACKBONE_IMAGE_SIZE' | 'HF_ENDPOINT' | 'HF_TOKEN'> & { paths: Pick<Config['paths'], 'dataDir'> };

/** What a hub pull reports while it runs (the server logs it, the CLI draws a bar). */
export type PullReporting = Pick<PullOptions, 'onProgress' | 'onFile'>;

/** Pulls `spec` from the configured hub into the blob store, unless it is there already (or `force`). */
export function pullConfiguredHubBackbone(
  config: BackboneSourceConfig,
  blobs: BlobStore,
  spec: string,
  opts: PullReporting & { force?: boolean } = {},
): Promise<PullResult> {
  return pullHubBackbone(spec, {
    ...opts,
    blobs,
    client: new HubClient({ endpoint: config.HF_ENDPOINT, token: config.HF_TOKEN }),
    tmpDir: path.join(config.paths.dataDir, 'tmp'),
  });
}

/** The configured backbone: a local folder, `blob:<key prefix>`, or `hf:<org>/<name>[@revision]`. */
export async function loadConfiguredBackbone(
  config: BackboneSourceConfig,
  blobs: BlobStore,
  reporting: PullReporting & { onPulled?: (r: PullResult) => void } = {},
  load: Pick<LoadOptions, 'deferResidency'> = {},
): Promise<Backbone> {
  const size: LoadOptions = { imageSize: config.BACKBONE_IMAGE_SIZE, ...load };
  if (isHubSpec(config.BACKBONE)) {
    const result = await pullConfiguredHubBackbone(config, blobs, config.BACKBONE, reporting);
    reporting.onPulled?.(result);
    return loadBackboneFromFiles(await readHubBackbone(result.manifest, blobs), size);
  }
  if (!config.BACKBONE.startsWith('blob:')) return loadBackbone(config.BACKBONE, size);
  const prefix = config.BACKBONE.slice('blob:'.length).replace(/\/+$/, '');
  const get = async (name: string, required: boolean): Promise<Buffer | undefined> => {
    try {
      return await blobs.getBuffer(`${prefix}/${name}`);
    } catch (err) {
      if (!required && err instanceof AppError && err.code === 'not_found') return undefined;
      if (err instanceof AppError && err.code === 'not_found') {
        throw new AppError('invalid_backbone', `backbone '${config.BACKBONE}' has no ${name} in the blob store`);
      }
      throw err;
    }
  };
  const [model, cfg, preprocessor] = await Promise.all([
    get('model.safetensors', true),
    get('config.json', true),
    get('preprocessor_config.json', false),
  ]);
  return loadBackboneFromFiles({ model: model!, config: cfg!, preprocessor }, size);
}

/** A hub pull as log lines: each file fetched or reused, at most one progress line per file per tenth, the outcome. */
export function pullLogReporting(log: Logger): PullReporting & { onPulled: (r: PullResult) => void } {
  let shown = -1;
  return {
    onFile: ({ file, size, action }) => {
      shown = -1;
      log.info({ file, bytes: size }, action === 'download' ? 'backbone: downloading from the hub' : 'backbone: file already in the blob store');
    },
    onProgress: ({ file, received, total }) => {
      if (total === undefined || total === 0) return;
      const tenth = Math.floor((received / total) * 10);
      if (tenth === shown) return;
      shown = tenth;
      log.info({ file, received, total, percent: tenth * 10 }, 'backbone: download progress');
    },
    onPulled: ({ manifest, pulled }) =>
      log.info(
        { spec: manifest.spec, commit: manifest.commit, files: manifest.files.length, bytes: manifest.files.reduce((s, f) => s + f.size, 0) },
        pulled ? 'backbone: pulled from the hub into the blob store' : 'backbone: read from the blob store (pulled before)',
      ),
  };
}
