/**
 * The scripts the images run, executed for real: the container health check against a loopback
 * HTTP server, the compose bucket init against an in-process S3 server (s3rver), and the GPU
 * image's onnxruntime CUDA-provider installer against a stand-in package and NuGet packages built
 * here (the real ones come from nuget.org, which these machines cannot reach).
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

describe('infra/docker/install-ort-cuda.mjs', () => {
  const script = path.join(DOCKER, 'install-ort-cuda.mjs');
  const VERSION = '1.30.0';
  const ID = 'microsoft.ml.onnxruntime.gpu.linux';
  const NATIVE = 'runtimes/linux-x64/native/';
  // An ELF header and a marker: what the installer checks, and what the test traces back to a source.
  const so = (marker: string) => Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46]), Buffer.from(marker)]);
  const PROVIDERS = ['libonnxruntime_providers_shared.so', 'libonnxruntime_providers_cuda.so', 'libonnxruntime_providers_tensorrt.so'];

  /** A stand-in onnxruntime-node: package.json with its version and the CPU binaries' folder. */
  function fakePackage(name: string, installScript?: string): { pkg: string; bin: string } {
    const pkg = path.join(tmpRoot, name, 'node_modules', 'onnxruntime-node');
    const bin = path.join(pkg, 'bin', 'napi-v6', 'linux', 'x64');
    fs.mkdirSync(bin, { recursive: true });
    fs.mkdirSync(path.join(pkg, 'script'), { recursive: true });
    fs.writeFileSync(path.join(pkg, 'package.json'), JSON.stringify({ name: 'onnxruntime-node', version: VERSION }));
    fs.writeFileSync(path.join(bin, 'libonnxruntime.so.1'), so('core'));
    if (installScript !== undefined) fs.writeFileSync(path.join(pkg, 'script', 'install.js'), installScript);
    return { pkg, bin };
  }
  /** A .nupkg as NuGet lays it out: a zip with the providers under runtimes/linux-x64/native/. */
  async function nupkg(marker: string, files = PROVIDERS): Promise<Buffer> {
    const yazl = createRequire(import.meta.url)('yazl') as { ZipFile: new () => { addBuffer(b: Buffer, n: string): void; end(): void; outputStream: NodeJS.ReadableStream } };
    const zip = new yazl.ZipFile();
    zip.addBuffer(Buffer.from('<package/>'), `${ID}.nuspec`);
    for (const f of files) zip.addBuffer(so(`${marker}:${f}`), NATIVE + f);
    zip.addBuffer(so('win'), 'runtimes/win-x64/native/onnxruntime_providers_cuda.dll');
    zip.end();
    const chunks: Buffer[] = [];
    for await (const c of zip.outputStream) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }
  const vendorDir = (name: string, files: Record<string, Buffer | string>): string => {
    const dir = path.join(tmpRoot, name);
    fs.mkdirSync(dir, { recursive: true });
    for (const [p, content] of Object.entries(files)) {
      fs.mkdirSync(path.dirname(path.join(dir, p)), { recursive: true });
      fs.writeFileSync(path.join(dir, p), content);
    }
    return dir;
  };
  const marker = (bin: string, f: string) => fs.readFileSync(path.join(bin, f)).subarray(4).toString();
  // The script imports yauzl, a production dependency: run from the repository, as from /app in the image.
  const install = (pkg: string, vendor: string, env: Record<string, string> = {}) => run(process.execPath, [script, pkg, vendor], env);

  it('extracts the providers from a vendored .nupkg of the same version, whatever its name case', async () => {
    const { pkg, bin } = fakePackage('nupkg');
    const vendor = vendorDir('nupkg-vendor', { [`Microsoft.ML.OnnxRuntime.Gpu.Linux.${VERSION}.nupkg`]: await nupkg('vendored') });
    const r = await install(pkg, vendor);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    for (const f of PROVIDERS) expect(marker(bin, f)).toBe(`vendored:${f}`);
    expect(fs.readdirSync(bin).some((f) => f.endsWith('.dll'))).toBe(false);
    expect(r.stdout).toContain('install-ort-cuda: ok');
  });

  it('refuses a vendored .nupkg of another version (the providers load only into their own core)', async () => {
    const { pkg, bin } = fakePackage('oldpkg');
    const vendor = vendorDir('oldpkg-vendor', { [`${ID}.1.22.0.nupkg`]: await nupkg('old') });
    const r = await install(pkg, vendor);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`needs ${ID}.${VERSION}.nupkg`);
    expect(fs.existsSync(path.join(bin, 'libonnxruntime_providers_cuda.so'))).toBe(false);
  });

  it('copies pre-extracted provider files from vendor/onnxruntime-gpu/', async () => {
    const { pkg, bin } = fakePackage('files');
    const vendor = vendorDir('files-vendor', {
      'onnxruntime-gpu/libonnxruntime_providers_shared.so': so('files:shared'),
      'onnxruntime-gpu/libonnxruntime_providers_cuda.so': so('files:cuda'),
    });
    const r = await install(pkg, vendor);
    expect(r.code).toBe(0);
    expect(marker(bin, 'libonnxruntime_providers_cuda.so')).toBe('files:cuda');
    // TensorRT's provider is optional (the image has no TensorRT).
    expect(fs.existsSync(path.join(bin, 'libonnxruntime_providers_tensorrt.so'))).toBe(false);
  });

  it('downloads the package from a NuGet flat-container mirror (ORT_NUGET_MIRROR)', async () => {
    const body = await nupkg('mirror');
    const asked: string[] = [];
    const server = http.createServer((req, res) => {
      asked.push(req.url ?? '');
      if (req.url === `/nuget/v3/content/${ID}/${VERSION}/${ID}.${VERSION}.nupkg`) res.writeHead(200).end(body);
      else res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { pkg, bin } = fakePackage('mirror');
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/nuget/v3/content`;
      const r = await install(pkg, vendorDir('mirror-vendor', {}), { ORT_NUGET_MIRROR: base });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(asked).toHaveLength(1);
      expect(marker(bin, 'libonnxruntime_providers_shared.so')).toBe('mirror:libonnxruntime_providers_shared.so');
      // The download is not left in the package.
      expect(fs.readdirSync(pkg).filter((f) => f.startsWith('.ort-cuda-'))).toEqual([]);
      const missing = await install(fakePackage('mirror404').pkg, vendorDir('mirror404-vendor', {}), { ORT_NUGET_MIRROR: `${base}/nothing-here/` });
      expect(missing.code).toBe(1);
      expect(missing.stderr).toContain('answered 404');
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it("falls back to onnxruntime-node's own installer with ONNXRUNTIME_NODE_INSTALL, and checks what it left", async () => {
    // The real one fetches from nuget.org; this one records its environment and writes the files.
    const writes = `const fs = require('fs'), path = require('path');
const bin = path.join(__dirname, '..', 'bin/napi-v6/linux/x64');
fs.writeFileSync(path.join(__dirname, 'called.json'), JSON.stringify({ flag: process.env.ONNXRUNTIME_NODE_INSTALL, cwd: process.cwd() }));
for (const f of ${JSON.stringify(PROVIDERS.slice(0, 2))}) fs.writeFileSync(path.join(bin, f), Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46]), Buffer.from('ort')]));
`;
    const { pkg, bin } = fakePackage('ortinstall', writes);
    const r = await install(pkg, vendorDir('ortinstall-vendor', {}), { ONNXRUNTIME_NODE_INSTALL: 'cuda12' });
    expect(r.code).toBe(0);
    expect(JSON.parse(fs.readFileSync(path.join(pkg, 'script', 'called.json'), 'utf8'))).toEqual({ flag: 'cuda12', cwd: pkg });
    expect(marker(bin, 'libonnxruntime_providers_cuda.so')).toBe('ort');

    // An installer that "succeeds" without leaving a shared library fails the build.
    const { pkg: bad } = fakePackage('ortinstall-bad', "require('fs').writeFileSync(require('path').join(__dirname, '..', 'bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so'), '<html>proxy login</html>');");
    const rb = await install(bad, vendorDir('ortinstall-bad-vendor', {}), { ONNXRUNTIME_NODE_INSTALL: 'cuda12' });
    expect(rb.code).toBe(1);
    expect(rb.stderr).toMatch(/libonnxruntime_providers_shared\.so is missing|no ELF header/);
  });

  it('refuses to guess when no source is given, and names the three ways', async () => {
    const { pkg, bin } = fakePackage('nosource');
    const r = await install(pkg, vendorDir('nosource-vendor', {}));
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('no source for the CUDA provider');
    expect(r.stderr).toContain('ORT_NUGET_MIRROR');
    expect(r.stderr).toContain('ONNXRUNTIME_NODE_INSTALL=cuda12');
    expect(fs.readdirSync(bin)).toEqual(['libonnxruntime.so.1']);
  });

  it('fails when onnxruntime-node is not installed', async () => {
    const r = await install(path.join(tmpRoot, 'absent'), tmpRoot);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('is onnxruntime-node installed?');
  });

  it("the vendor folder's README names the version the lockfile installs", () => {
    const lock = JSON.parse(fs.readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { version: string }> };
    const ort = lock.packages['node_modules/onnxruntime-node'].version;
    expect(fs.readFileSync(path.join(DOCKER, 'vendor', 'README.md'), 'utf8')).toContain(`(${ort} today)`);
  });
});
