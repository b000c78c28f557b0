/**
 * A client for a Hugging Face-compatible model hub (huggingface.co or a mirror at HF_ENDPOINT).
 * Files live at `<endpoint>/<org>/<name>/resolve/<revision>/<file>`. A HEAD that does not follow
 * redirects tells what the hub promises about a file: its size (`X-Linked-Size` for LFS files,
 * else `Content-Length`), its hash (`X-Linked-Etag` = sha256 for LFS files, `ETag` = the git
 * blob sha1 for small ones) and the commit the revision resolved to (`X-Repo-Commit`) — the same
 * headers huggingface_hub reads. A download lands in a local file, verified against them; any
 * failure removes that file, so a caller only ever sees a whole, checked file or an error.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AppError } from '../errors.js';

export const HUB_SCHEME = 'hf:';

export interface HubSpec {
  /** `<org>/<name>` */
  repo: string;
  /** Branch, tag or commit; `main` when the spec names none. */
  revision: string;
}

const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$/;
const REVISION = /^[A-Za-z0-9._/-]{1,200}$/;

export const isHubSpec = (backbone: string): boolean => backbone.startsWith(HUB_SCHEME);

/** `hf:<org>/<name>[@revision]` → its parts; a malformed spec fails with config_invalid. */
export function parseHubSpec(spec: string): HubSpec {
  const bad = (why: string) =>
    new AppError('config_invalid', `backbone '${spec}' is not a hub spec (${why}): expected hf:<org>/<name>[@revision]`);
  if (!isHubSpec(spec)) throw bad(`no '${HUB_SCHEME}' prefix`);
  const body = spec.slice(HUB_SCHEME.length);
  const at = body.indexOf('@');
  const repo = at < 0 ? body : body.slice(0, at);
  const revision = at < 0 ? 'main' : body.slice(at + 1);
  const parts = repo.split('/');
  if (parts.length !== 2 || !parts.every((p) => SEGMENT.test(p) && !p.includes('..'))) throw bad(`'${repo}' is not <org>/<name>`);
  if (!REVISION.test(revision) || revision.split('/').some((s) => s === '' || s === '.' || s === '..')) {
    throw bad(`'${revision}' is not a revision`);
  }
  return { repo, revision };
}

export interface HubFile {
  name: string;
  /** The resolve URL (what errors name). */
  url: string;
  /** Where the bytes are fetched from (the CDN a redirect points to, or `url`). */
  downloadUrl: string;
  size?: number;
  sha256?: string;
  gitSha1?: string;
  commit?: string;
}

export interface DownloadProgress {
  file: string;
  received: number;
  total: number | undefined;
}

export interface HubClientOptions {
  /** e.g. https://huggingface.co (no trailing slash needed). */
  endpoint: string;
  token?: string;
}

const MAX_REDIRECTS = 5;

function hashHeader(value: string | null): { sha256?: string; gitSha1?: string } {
  const v = (value ?? '').replace(/^W\//, '').replace(/"/g, '').trim().toLowerCase();
  if (/^[0-9a-f]{64}$/.test(v)) return { sha256: v };
  if (/^[0-9a-f]{40}$/.test(v)) return { gitSha1: v };
  return {};
}

function sizeHeader(value: string | null): number | undefined {
  if (value === null || !/^\d+$/.test(value.trim())) return undefined;
  return Number(value);
}

export class HubClient {
  readonly endpoint: string;
  private readonly token: string | undefined;

  constructor(opts: HubClientOptions) {
    this.endpoint = opts.endpoint.replace(/\/+$/, '');
    this.token = opts.token;
  }

  fileUrl(spec: HubSpec, name: string): string {
    return `${this.endpoint}/${spec.repo}/resolve/${encodeURIComponent(spec.revision)}/${name.split('/').map(encodeURIComponent).join('/')}`;
  }

  /** The token goes to the hub's own origin only, never to a CDN a redirect names. */
  private headers(url: string): Record<string, string> {
    const h: Record<string, string> = { 'accept-encoding': 'identity', 'user-agent': 'dtl-host' };
    if (this.token !== undefined && new URL(url).origin === new URL(this.endpoint).origin) h.authorization = `Bearer ${this.token}`;
    return h;
  }

  private async request(url: string, init: RequestInit): Promise<Response> {
    try {
      return await fetch(url, { ...init, headers: this.headers(url) });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      const why = cause?.code ?? cause?.message ?? (err as Error).message;
      throw new AppError(
        'unavailable',
        `cannot reach ${url} (${why}): the model hub is out of reach from here. To run offline, mirror the repository ` +
          `(its files served as <mirror>/<org>/<name>/resolve/<revision>/<file>) and set HF_ENDPOINT to the mirror; or run ` +
          `'dtl-host backbone pull <hf:spec>' where the hub is reachable, against the same blob store; or download the files and set BACKBONE to their folder`,
        { cause: err },
      );
    }
  }

  private refusal(res: Response, url: string, spec: HubSpec, name: string): AppError {
    if (res.status === 401 || res.status === 403) {
      const hint = this.token === undefined ? 'set HF_TOKEN to a token that may read it' : 'the HF_TOKEN given may not read it';
      return new AppError('invalid_backbone', `the hub refused ${url} (HTTP ${res.status}): ${spec.repo} is gated, private or does not exist — ${hint}`);
    }
    if (res.status === 404) {
      return new AppError('invalid_backbone', `${url} not found (HTTP 404): ${spec.repo} has no '${name}' at revision '${spec.revision}'`);
    }
    return new AppError('unavailable', `the hub answered HTTP ${res.status} for ${url}`);
  }

  /** What the hub says about a file; undefined for a missing one when `optional`. */
  async head(spec: HubSpec, name: string, opts: { optional?: boolean } = {}): Promise<HubFile | undefined> {
    const url = this.fileUrl(spec, name);
    let at = url;
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const res = await this.request(at, { method: 'HEAD', redirect: 'manual' });
      const linkedSize = sizeHeader(res.headers.get('x-linked-size'));
      const common = {
        name,
        url,
        commit: res.headers.get('x-repo-commit') ?? undefined,
        ...hashHeader(res.headers.get('x-linked-etag') ?? res.headers.get('etag')),
      };
      if (res.status >= 300 && res.status < 400) {
        const location = res.headers.get('location');
        if (location === null) throw new AppError('unavailable', `the hub answered HTTP ${res.status} without a Location for ${at}`);
        const next = new URL(location, at).href;
        // An LFS file: this answer carries the metadata and points at the bytes elsewhere.
        if (linkedSize !== undefined || common.sha256 !== undefined || new URL(next).origin !== new URL(at).origin) {
          return { ...common, size: linkedSize, downloadUrl: next };
        }
        at = next; // a renamed repository: the same hub, another path
        continue;
      }
      if (res.status === 404 && opts.optional) return undefined;
      if (!res.ok) throw this.refusal(res, url, spec, name);
      return { ...common, size: linkedSize ?? sizeHeader(res.headers.get('content-length')), downloadUrl: at };
    }
    throw new AppError('unavailable', `more than ${MAX_REDIRECTS} redirects for ${url}`);
  }

  /**
   * Downloads a file into `dest`, checking its size and hash against what head() reported;
   * returns the sha256 of its bytes. On any failure `dest` is removed before the error is thrown.
   */
  async download(file: HubFile, dest: string, onProgress?: (p: DownloadProgress) => void): Promise<string> {
    const sha256 = createHash('sha256');
    let received = 0;
    try {
      const res = await this.request(file.downloadUrl, { method: 'GET', redirect: 'follow' });
      if (!res.ok || res.body === null) {
        throw new AppError(res.status >= 500 ? 'unavailable' : 'invalid_backbone', `the hub answered HTTP ${res.status} for ${file.url}`);
      }
      const total = file.size ?? sizeHeader(res.headers.get('content-length'));
      const sha1 = file.gitSha1 !== undefined && total !== undefined ? createHash('sha1').update(`blob ${total}\0`) : undefined;
      const tap = new Transform({
        transform(chunk: Buffer, _enc, done) {
          received += chunk.length;
          sha256.update(chunk);
          sha1?.update(chunk);
          onProgress?.({ file: file.name, received, total });
          done(null, chunk);
        },
      });
      try {
        await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>), tap, createWriteStream(dest, { flags: 'wx' }));
      } catch (err) {
        throw new AppError('unavailable', `download of ${file.url} broke off after ${received} of ${total ?? '?'} bytes (${(err as Error).message}); nothing was kept — retry`, { cause: err });
      }
      if (total !== undefined && received !== total) {
        throw new AppError('unavailable', `download of ${file.url} was cut short: ${received} of ${total} bytes; nothing was kept — retry`);
      }
      const got = sha256.digest('hex');
      if (file.sha256 !== undefined && got !== file.sha256) {
        throw new AppError('invalid_backbone', `${file.url} has sha256 ${got}, but the hub reports ${file.sha256}; nothing was kept`);
      }
      if (sha1 !== undefined) {
        const gotSha1 = sha1.digest('hex');
        if (gotSha1 !== file.gitSha1) {
          throw new AppError('invalid_backbone', `${file.url} has git sha1 ${gotSha1}, but the hub reports ${file.gitSha1}; nothing was kept`);
        }
      }
      return got;
    } catch (err) {
      await rm(dest, { force: true });
      throw err;
    }
  }
}
