/**
 * `dtl-host backbone pull <hf:org/name[@revision]> [--force]` — pulls a backbone from the model
 * hub (HF_ENDPOINT, HF_TOKEN) into the configured blob store, where `BACKBONE=hf:…` then finds it
 * without the network. A progress bar on stderr (one line per tenth of a file when stderr is
 * not a terminal), a JSON summary on stdout.
 */
import { loadConfig } from '../config.js';
import type { DownloadProgress } from '../services/hub-client.js';
import { UsageError, type Command } from './command.js';
import type { ProgressStream } from './progress.js';

const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;

/** `model.safetensors  [########............]  41.2%  142.0 / 346.0 MB` */
export function formatDownload(p: DownloadProgress, barWidth = 20): string {
  if (p.total === undefined || p.total === 0) return `${p.file}  ${mb(p.received)}`;
  const frac = Math.min(1, p.received / p.total);
  const filled = Math.round(frac * barWidth);
  return `${p.file}  [${'#'.repeat(filled)}${'.'.repeat(barWidth - filled)}]  ${(frac * 100).toFixed(1).padStart(5)}%  ${mb(p.received)} / ${mb(p.total)}`;
}

/** Draws download progress: redrawn in place on a terminal, one line per tenth elsewhere. */
export class DownloadBar {
  private open = false;
  private shown = -1;

  constructor(private readonly stream: ProgressStream) {}

  progress(p: DownloadProgress): void {
    if (this.stream.isTTY === true) {
      this.stream.write(`\r${formatDownload(p)}\x1b[K`);
      this.open = true;
      return;
    }
    const tenth = p.total ? Math.floor((p.received / p.total) * 10) : -1;
    if (tenth === this.shown) return;
    this.shown = tenth;
    this.stream.write(`${formatDownload(p)}\n`);
  }

  note(line: string): void {
    this.finish();
    this.shown = -1;
    this.stream.write(`${line}\n`);
  }

  finish(): void {
    if (this.open) this.stream.write('\n');
    this.open = false;
  }
}

export const backboneCommand: Command = {
  name: 'backbone',
  summary: 'pull a backbone from the model hub into the blob store',
  usage: [
    'usage: dtl-host backbone pull <hf:org/name[@revision]> [--force]',
    '',
    '  pull       download config.json, preprocessor_config.json (if any) and the safetensors',
    '             weights (sharded too), check them against the sizes and hashes the hub reports,',
    '             and store them in the blob store (BLOB_DIR / S3_BUCKET) under backbones/',
    '  --force    ask the hub again even if the blob store already holds this revision',
    '',
    'Hub: HF_ENDPOINT (default https://huggingface.co; a mirror works), HF_TOKEN for gated repositories.',
  ].join('\n'),
  options: { force: { type: 'boolean' } },
  async run(values, positionals) {
    const [verb, spec, ...extra] = positionals;
    if (verb !== 'pull') throw new UsageError(verb === undefined ? 'give a verb: pull' : `unknown verb '${verb}' (verbs: pull)`);
    if (spec === undefined) throw new UsageError('give the backbone to pull: hf:<org>/<name>[@revision]');
    if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(' ')}`);
    const { parseHubSpec } = await import('../services/hub-client.js');
    try {
      parseHubSpec(spec);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    const config = loadConfig();
    const { openBlobStore } = await import('../storage/index.js');
    const { pullConfiguredHubBackbone } = await import('../services/backbone.js');
    const blobs = await openBlobStore(config);
    const bar = new DownloadBar(process.stderr);
    try {
      const { manifest, pulled } = await pullConfiguredHubBackbone(config, blobs, spec, {
        force: values.force === true,
        onProgress: (p) => bar.progress(p),
        onFile: ({ file, size, action }) =>
          bar.note(action === 'download' ? `downloading ${file}${size === undefined ? '' : ` (${mb(size)})`}` : `${file}: already in the blob store`),
      });
      bar.finish();
      if (!pulled) bar.note(`${manifest.spec} is already in the blob store (pulled ${manifest.pulledAt}); --force asks the hub again`);
      const bytes = manifest.files.reduce((s, f) => s + f.size, 0);
      process.stdout.write(`${JSON.stringify({ spec: manifest.spec, commit: manifest.commit ?? null, pulled, files: manifest.files, bytes }, null, 2)}\n`);
    } finally {
      bar.finish();
      await blobs.close();
    }
  },
};
