/**
 * `--backbone` of predict and train: a folder, a Google ViT `.npz`, or `hf:<org>/<name>[@revision]`
 * (read from the configured blob store, pulled from HF_ENDPOINT first if it is not there, with
 * the download drawn on stderr).
 */
import type { Config } from '../config.js';
import type { Backbone, LoadOptions } from '../model/index.js';
import { DownloadBar } from './backbone.js';

export async function loadBackboneArg(arg: string, config: Config, load: Pick<LoadOptions, 'deferResidency'> = {}): Promise<Backbone> {
  const { isHubSpec } = await import('../services/hub-client.js');
  if (!isHubSpec(arg)) {
    const { loadBackbone } = await import('../model/index.js');
    return loadBackbone(arg, { imageSize: config.BACKBONE_IMAGE_SIZE, ...load });
  }
  const { openBlobStore } = await import('../storage/index.js');
  const { loadConfiguredBackbone } = await import('../services/backbone.js');
  const blobs = await openBlobStore(config);
  const bar = new DownloadBar(process.stderr);
  try {
    return await loadConfiguredBackbone({ ...config, BACKBONE: arg }, blobs, {
      onProgress: (p) => bar.progress(p),
      onFile: ({ file, action }) => action === 'download' && bar.note(`downloading ${file}`),
    }, load);
  } finally {
    bar.finish();
    await blobs.close();
  }
}
