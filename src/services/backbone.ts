/**
 * Where the configured backbone comes from: a local folder, or `blob:<key prefix>` in the blob
 * store (so every replica of a fleet can read one copy from S3). Used by the server and the CLI.
 */
import type { Config } from '../config.js';
import { AppError } from '../errors.js';
import { loadBackboneFromDir, loadBackboneFromFiles, type Backbone } from '../model/index.js';
import type { BlobStore } from '../storage/index.js';

/** The configured backbone: a local folder, or `blob:<key prefix>` in the blob store. */
export async function loadConfiguredBackbone(config: Pick<Config, 'BACKBONE'>, blobs: BlobStore): Promise<Backbone> {
  if (!config.BACKBONE.startsWith('blob:')) return loadBackboneFromDir(config.BACKBONE);
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
  return loadBackboneFromFiles({ model: model!, config: cfg!, preprocessor });
}
