/**
 * A model hub on loopback that answers like huggingface.co: `/<org>/<name>/resolve/<rev>/<file>`;
 * small files answered directly with `ETag` = git blob sha1; `.safetensors` files (LFS on the real
 * hub) answered with a 302 to a CDN path plus `X-Linked-Size` / `X-Linked-Etag` (sha256); every
 * resolve answer carries `X-Repo-Commit`. Faults per file reproduce what goes wrong in the wild.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type HubFault =
  /** Content-Length promises the whole file, half is sent, then the connection is cut. */
  | 'cut'
  /** The CDN sends a shorter, self-consistent body; the hub's X-Linked-Size says the full size. */
  | 'short'
  /** The hub reports another file's hash. */
  | 'wrong-hash'
  /** 404 */
  | 'missing';

export interface HubServer {
  url: string;
  /** `METHOD path` of every request, in order. */
  requests: string[];
  /** Authorization headers the CDN path received (should stay empty). */
  cdnAuthorization: string[];
  fault(file: string, fault: HubFault | undefined): void;
  close(): Promise<void>;
}

export type HubRepos = Record<string, Record<string, Map<string, Uint8Array>>>;

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const gitSha1 = (b: Uint8Array) => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');

/** repos: `org/name` → revision → file name → bytes. `token`: required on resolve paths. */
export async function startHubServer(repos: HubRepos, opts: { token?: string } = {}): Promise<HubServer> {
  const faults = new Map<string, HubFault>();
  const requests: string[] = [];
  const cdnAuthorization: string[] = [];
  const blobs = new Map<string, Uint8Array>();
  const commit = (repo: string, rev: string) => createHash('sha1').update(`${repo}@${rev}`).digest('hex');

  const send = (req: IncomingMessage, res: ServerResponse, bytes: Uint8Array, headers: Record<string, string>, fault?: HubFault) => {
    if (fault === 'short') bytes = bytes.subarray(0, bytes.length >> 1);
    res.writeHead(200, { 'content-length': String(bytes.length), 'content-type': 'application/octet-stream', ...headers });
    if (req.method === 'HEAD') return res.end();
    if (fault === 'cut') {
      res.write(bytes.subarray(0, bytes.length >> 1), () => res.destroy());
      return;
    }
    res.end(bytes);
  };

  let cdnOrigin = '';
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://x');
    requests.push(`${req.method} ${url.pathname}`);
    const cdn = /^\/cdn\/([0-9a-f]{64})$/.exec(url.pathname);
    if (cdn) {
      if (req.headers.authorization !== undefined) cdnAuthorization.push(req.headers.authorization);
      const bytes = blobs.get(cdn[1]);
      if (!bytes) return res.writeHead(404).end();
      const file = url.searchParams.get('f') ?? '';
      return send(req, res, bytes, {}, faults.get(file));
    }
    const m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (!m) return res.writeHead(404).end();
    if (opts.token !== undefined && req.headers.authorization !== `Bearer ${opts.token}`) return res.writeHead(401).end();
    const [repo, rev, file] = [m[1], decodeURIComponent(m[2]), decodeURIComponent(m[3])];
    const bytes = repos[repo]?.[rev]?.get(file);
    if (!bytes || faults.get(file) === 'missing') return res.writeHead(404, { 'x-error-code': 'EntryNotFound' }).end();
    const fault = faults.get(file);
    const reported = fault === 'wrong-hash' ? new Uint8Array([...bytes, 1]) : bytes;
    const common = { 'x-repo-commit': commit(repo, rev) };
    if (file.endsWith('.safetensors')) {
      const hash = sha256(bytes);
      blobs.set(hash, bytes);
      res.writeHead(302, {
        ...common,
        location: `${cdnOrigin}/cdn/${hash}?f=${encodeURIComponent(file)}`,
        'x-linked-size': String(bytes.length),
        'x-linked-etag': `"${sha256(reported)}"`,
      });
      return res.end();
    }
    return send(req, res, bytes, { ...common, etag: `"${gitSha1(reported)}"` }, fault);
  };
  // The CDN on its own port: another origin, as on the real hub (the token must not follow).
  const [server, cdn] = [createServer(handler), createServer(handler)];
  const listen = async (s: typeof server) => {
    s.listen(0, '127.0.0.1');
    await new Promise((resolve) => s.once('listening', resolve));
    return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
  };
  const url = await listen(server);
  cdnOrigin = await listen(cdn);
  const stop = (s: typeof server) =>
    new Promise<void>((resolve) => {
      s.closeAllConnections();
      s.close(() => resolve());
    });
  return {
    url,
    requests,
    cdnAuthorization,
    fault: (file, fault) => (fault === undefined ? faults.delete(file) : faults.set(file, fault)),
    close: async () => {
      await Promise.all([stop(server), stop(cdn)]);
    },
  };
}
