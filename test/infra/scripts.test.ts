/**
 * The scripts the images run, executed for real: the container health check against a loopback
 * HTTP server, the compose bucket init against an in-process S3 server (s3rver), and the GPU
 * image's libtensorflow installer against a stand-in package (the real one downloads from the
 * internet, which these machines cannot reach).
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { HeadBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INFRA, ROOT } from './manifests.js';

const DOCKER = path.join(INFRA, 'docker');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

function run(cmd: string, args: string[], env: Record<string, string>, cwd = ROOT): Promise<Run> {
  const started = Date.now();
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, env: { PATH: process.env.PATH ?? '', ...env }, timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
      resolve({ code, stdout, stderr, ms: Date.now() - started });
    });
  });
}

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'dtl-infra-scripts-'));
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

describe('infra/docker/healthcheck.mjs', () => {
  let server: http.Server;
  let port: number;
  beforeAll(async () => {
    server = http.createServer((req, res) => {
      if (req.url === '/healthz') res.writeHead(200).end('ok');
      else if (req.url === '/readyz') res.writeHead(503).end('draining');
      // /hang: never answers; the check must give up by itself.
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  const check = (env: Record<string, string>, ...args: string[]) =>
    run(process.execPath, [path.join(DOCKER, 'healthcheck.mjs'), ...args], env);

  it('exits 0 when /healthz answers 200 on PORT', async () => {
    expect((await check({ PORT: String(port) })).code).toBe(0);
    expect((await check({ PORT: String(port), HOST: '127.0.0.1' })).code).toBe(0);
  });

  it('exits 1 on another status, naming it', async () => {
    const r = await check({ PORT: String(port) }, '/readyz');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('answered 503');
  });

  it('exits 1 when nothing listens', async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const freePort = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const r = await check({ PORT: String(freePort) });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('failed');
  });

  it('exits 1 within its own timeout when the server hangs', async () => {
    const r = await check({ PORT: String(port) }, '/hang');
    expect(r.code).toBe(1);
    // Docker's HEALTHCHECK --timeout is 5 s; the script gives up before that.
    expect(r.ms).toBeLessThan(5_000);
  });
});

describe('infra/docker/create-bucket.mjs', () => {
  interface S3rverInstance {
    run(): Promise<AddressInfo>;
    close(): Promise<void>;
  }
  const require = createRequire(import.meta.url);
  const S3rver = require('s3rver') as new (options: Record<string, unknown>) => S3rverInstance;
  const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
  let s3: S3rverInstance;
  let endpoint: string;
  beforeAll(async () => {
    const directory = fs.mkdtempSync(path.join(tmpRoot, 's3rver-'));
    s3 = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory, resetOnClose: true });
    endpoint = `http://127.0.0.1:${(await s3.run()).port}`;
  });
  afterAll(() => s3.close());

  const env = (bucket: string, over: Record<string, string> = {}) => ({
    S3_BUCKET: bucket,
    S3_ENDPOINT: endpoint,
    S3_FORCE_PATH_STYLE: 'true',
    AWS_ACCESS_KEY_ID: credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
    ...over,
  });
  const createBucket = (e: Record<string, string>, ...args: string[]) =>
    run(process.execPath, ['--import', 'tsx', 'infra/docker/create-bucket.mjs', ...args], e);
  const exists = async (bucket: string) => {
    const client = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials });
    try {
      await client.send(new HeadBucketCommand({ Bucket: bucket }));
      return true;
    } catch (err) {
      if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return false;
      throw err;
    } finally {
      client.destroy();
    }
  };

  it('creates a missing bucket, then finds it there on a second run', async () => {
    expect(await exists('dtl-init-test')).toBe(false);
    const first = await createBucket(env('dtl-init-test'));
    expect(first).toMatchObject({ code: 0 });
    expect(first.stdout).toContain('created dtl-init-test');
    expect(await exists('dtl-init-test')).toBe(true);
    const second = await createBucket(env('dtl-init-test'));
    expect(second).toMatchObject({ code: 0 });
    expect(second.stdout).toContain('dtl-init-test exists');
  });

  it('exits 2 on configuration the service itself would refuse', async () => {
    const noBucket = await createBucket(env('x', { S3_BUCKET: '' }));
    expect(noBucket.code).toBe(2);
    expect(noBucket.stderr).toContain('S3_BUCKET is not set');
    const badUrl = await createBucket(env('dtl-bad', { S3_ENDPOINT: 'not a url' }));
    expect(badUrl.code).toBe(2);
    expect(badUrl.stderr).toContain('S3_ENDPOINT');
  });

  it('retries an unreachable store until its deadline, then exits 1', async () => {
    const r = await createBucket(env('dtl-gone', { S3_ENDPOINT: 'http://127.0.0.1:9' }), '--timeout-ms', '1500');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('gave up on dtl-gone');
    expect(r.ms).toBeGreaterThanOrEqual(1_500);
  });
});

describe('infra/docker/install-tfjs-gpu.sh', () => {
  const script = path.join(DOCKER, 'install-tfjs-gpu.sh');

  /**
   * A stand-in @tensorflow/tfjs-node-gpu: its scripts/install.js records how it was called and,
   * like the real one, leaves deps/lib/libtensorflow.so.2.9.1 (downloaded when asked to) and the
   * addon under lib/napi-v8/ — unless told to "fail" to produce the addon.
   */
  function fakePackage(name: string, opts: { noAddon?: boolean } = {}): string {
    const pkg = path.join(tmpRoot, name, 'node_modules', '@tensorflow', 'tfjs-node-gpu');
    fs.mkdirSync(path.join(pkg, 'scripts'), { recursive: true });
    fs.mkdirSync(path.join(tmpRoot, name, 'node_modules', '.bin'), { recursive: true });
    fs.writeFileSync(
      path.join(pkg, 'scripts', 'install.js'),
      `const fs = require('fs'), path = require('path');
const root = path.join(__dirname, '..');
fs.writeFileSync(path.join(root, 'called.json'), JSON.stringify({
  argv: process.argv.slice(2), cwd: process.cwd(), baseUri: process.env.TFJS_NODE_BASE_URI ?? null,
  mirror: process.env.npm_config_tfjs_binding_binary_host_mirror ?? null, path: process.env.PATH,
  custom: fs.existsSync(path.join(__dirname, 'custom-binary.json')) }));
if (process.argv[3] === 'download') {
  fs.mkdirSync(path.join(root, 'deps', 'lib'), { recursive: true });
  fs.writeFileSync(path.join(root, 'deps', 'lib', 'libtensorflow.so.2.9.1'), 'downloaded');
}
${opts.noAddon ? '' : "fs.mkdirSync(path.join(root, 'lib', 'napi-v8'), { recursive: true }); fs.writeFileSync(path.join(root, 'lib', 'napi-v8', 'tfjs_binding.node'), 'addon');"}
`,
    );
    return pkg;
  }
  const vendorDir = (name: string, files: Record<string, string>): string => {
    const dir = path.join(tmpRoot, name);
    for (const [p, content] of Object.entries(files)) {
      fs.mkdirSync(path.dirname(path.join(dir, p)), { recursive: true });
      fs.writeFileSync(path.join(dir, p), content);
    }
    fs.mkdirSync(dir, { recursive: true });
    return dir;
  };
  const called = (pkg: string) => JSON.parse(fs.readFileSync(path.join(pkg, 'called.json'), 'utf8')) as {
    argv: string[];
    baseUri: string | null;
    mirror: string | null;
    path: string;
    custom: boolean;
  };

  it('uses a pre-placed libtensorflow without downloading', async () => {
    const pkg = fakePackage('preplaced');
    const vendor = vendorDir('preplaced-vendor', {
      'libtensorflow/lib/libtensorflow.so.2.9.1': 'vendored',
      'libtensorflow/include/tensorflow/c/c_api.h': '// header',
    });
    const r = await run('sh', [script, pkg, vendor], {});
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(called(pkg).argv).toEqual(['gpu']);
    expect(fs.readFileSync(path.join(pkg, 'deps/lib/libtensorflow.so.2.9.1'), 'utf8')).toBe('vendored');
    expect(fs.existsSync(path.join(pkg, 'deps/include/tensorflow/c/c_api.h'))).toBe(true);
    expect(r.stdout).toContain('install-tfjs-gpu: ok');
  });

  it('downloads from the mirror given in TFJS_NODE_BASE_URI, with the addon mirror passed through', async () => {
    const pkg = fakePackage('mirror');
    const vendor = vendorDir('mirror-vendor', {});
    const r = await run('sh', [script, pkg, vendor], {
      TFJS_NODE_BASE_URI: 'https://mirror.internal/libtensorflow/libtensorflow-',
      npm_config_tfjs_binding_binary_host_mirror: 'https://mirror.internal/tf-builds/pre-built-binary',
    });
    expect(r.code).toBe(0);
    const c = called(pkg);
    expect(c.argv).toEqual(['gpu', 'download']);
    expect(c.baseUri).toBe('https://mirror.internal/libtensorflow/libtensorflow-');
    expect(c.mirror).toBe('https://mirror.internal/tf-builds/pre-built-binary');
    // install.js starts node-pre-gyp through the shell: the app's node_modules/.bin is on PATH.
    expect(c.path.split(':').map((p) => path.resolve(p))).toContain(path.resolve(pkg, '../../.bin'));
  });

  it('takes a custom-binary.json from the vendor folder', async () => {
    const pkg = fakePackage('custom');
    const vendor = vendorDir('custom-vendor', { 'custom-binary.json': '{"tf-lib": "https://mirror.internal/tf.tar.gz"}' });
    const r = await run('sh', [script, pkg, vendor], {});
    expect(r.code).toBe(0);
    expect(called(pkg)).toMatchObject({ argv: ['gpu', 'download'], custom: true });
  });

  it('refuses to guess when no source is given', async () => {
    const pkg = fakePackage('nosource');
    const r = await run('sh', [script, pkg, vendorDir('nosource-vendor', {})], {});
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('no libtensorflow source');
    expect(fs.existsSync(path.join(pkg, 'called.json'))).toBe(false);
  });

  it('fails the build when the addon did not appear', async () => {
    const pkg = fakePackage('noaddon', { noAddon: true });
    const r = await run('sh', [script, pkg, vendorDir('noaddon-vendor', {})], { TFJS_NODE_BASE_URI: 'https://m/' });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('tfjs_binding.node');
  });

  it('fails when the package is not installed', async () => {
    const r = await run('sh', [script, path.join(tmpRoot, 'absent'), tmpRoot], {});
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('is @tensorflow/tfjs-node-gpu installed?');
  });
});
