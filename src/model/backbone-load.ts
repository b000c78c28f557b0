/**
 * A backbone from a path: a folder (model.safetensors + config.json, Hugging Face or timm
 * layout — or, instead of model.safetensors, one Google ViT `.npz`), or an `.npz` file itself.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { AppError } from '../errors.js';
import { buildBackbone, loadBackboneFromDir, settledUnlessDeferred, type Backbone, type LoadOptions } from './backbone.js';
import { atImageSize } from './pos-embed.js';
import { readNpzViT } from './backbone-npz.js';
import { readNpz } from './npz.js';

/** A Google ViT checkpoint (`ViT-B_16.npz` …) from its bytes. */
export async function loadBackboneFromNpz(bytes: Uint8Array, opts: LoadOptions = {}): Promise<Backbone> {
  const arrays = await readNpz(bytes, { code: 'invalid_backbone', what: 'backbone .npz' });
  const { config, weights, identity } = atImageSize(readNpzViT(arrays, bytes), opts.imageSize);
  return settledUnlessDeferred(buildBackbone(config, weights, identity), opts);
}

async function readNpzFile(file: string, opts: LoadOptions): Promise<Backbone> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    throw new AppError('invalid_backbone', `cannot read ${file}: ${(err as Error).message}`);
  }
  return loadBackboneFromNpz(bytes, opts);
}

/** `location`: a backbone folder or an `.npz` file. */
export async function loadBackbone(location: string, opts: LoadOptions = {}): Promise<Backbone> {
  if (location.endsWith('.npz')) return readNpzFile(location, opts);
  const entries = await readdir(location).catch(() => [] as string[]);
  if (!entries.includes('model.safetensors')) {
    const npz = entries.filter((e) => e.endsWith('.npz'));
    if (npz.length === 1 && (await stat(path.join(location, npz[0]))).isFile()) return readNpzFile(path.join(location, npz[0]), opts);
    if (npz.length > 1) throw new AppError('invalid_backbone', `backbone folder '${location}' holds several .npz files (${npz.join(', ')}): name one in BACKBONE`);
  }
  return loadBackboneFromDir(location, opts);
}
