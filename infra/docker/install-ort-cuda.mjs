#!/usr/bin/env node
// Installs onnxruntime-node's CUDA execution provider (libonnxruntime_providers_{shared,cuda}.so,
// and _tensorrt.so when the source has it) next to its CPU binaries, without needing nuget.org.
// The npm package does not ship them (too large for the registry); its install script downloads
// the NuGet package Microsoft.ML.OnnxRuntime.Gpu.Linux of the same version from nuget.org, which a
// GPU site behind a firewall cannot reach. Sources, first found wins:
//
//   1. <vendor>/onnxruntime-gpu/*.so — the files themselves, already unpacked;
//   2. <vendor>/microsoft.ml.onnxruntime.gpu.linux.<version>.nupkg (any case) — the package;
//   3. ORT_NUGET_MIRROR — base URL of a NuGet v3 package-content feed ("flat container": Nexus,
//      Artifactory, BaGet …); <base><id>/<version>/<id>.<version>.nupkg is downloaded;
//   4. ONNXRUNTIME_NODE_INSTALL=cuda12 — onnxruntime-node's own installer (nuget.org).
//
// <version> is onnxruntime-node's own: the providers are built with the core library and load
// only into the same version. The result is checked (ELF files in place) before the build goes on.
//
// usage: node install-ort-cuda.mjs <onnxruntime-node package dir> <vendor dir>
/* global fetch */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import yauzl from 'yauzl';

const ID = 'microsoft.ml.onnxruntime.gpu.linux';
const IN_PACKAGE = 'runtimes/linux-x64/native/';
const REQUIRED = ['libonnxruntime_providers_shared.so', 'libonnxruntime_providers_cuda.so'];
const OPTIONAL = ['libonnxruntime_providers_tensorrt.so'];

const fail = (code, ...lines) => {
  for (const l of lines) process.stderr.write(`install-ort-cuda: ${l}\n`);
  process.exit(code);
};
const say = (line) => process.stdout.write(`install-ort-cuda: ${line}\n`);

const [pkgArg, vendor] = process.argv.slice(2);
if (!pkgArg || !vendor) fail(64, 'usage: install-ort-cuda.mjs <onnxruntime-node package dir> <vendor dir>');
const pkg = path.resolve(pkgArg);
let version;
try {
  ({ version } = JSON.parse(fs.readFileSync(path.join(pkg, 'package.json'), 'utf8')));
} catch {
  fail(1, `${pkg} holds no package.json; is onnxruntime-node installed?`);
}
const binDir = path.join(pkg, 'bin', 'napi-v6', 'linux', 'x64');
if (!fs.existsSync(binDir)) fail(1, `${binDir} is missing; is onnxruntime-node ${version} installed for linux/x64?`);

/** The provider files out of a .nupkg (a zip), into binDir. */
function extract(nupkg) {
  const wanted = new Set([...REQUIRED, ...OPTIONAL].map((f) => IN_PACKAGE + f));
  return new Promise((resolve, reject) => {
    yauzl.open(nupkg, { lazyEntries: true }, (err, zip) => {
      if (err) return reject(new Error(`${nupkg} is not a readable zip: ${err.message}`));
      zip.on('error', reject);
      zip.on('end', resolve);
      zip.on('entry', (entry) => {
        if (!wanted.has(entry.fileName)) return zip.readEntry();
        zip.openReadStream(entry, (e, stream) => {
          if (e) return reject(e);
          const out = fs.createWriteStream(path.join(binDir, path.basename(entry.fileName)));
          stream.on('error', reject);
          out.on('error', reject);
          out.on('finish', () => zip.readEntry());
          stream.pipe(out);
        });
      });
      zip.readEntry();
    });
  });
}

const nupkgName = `${ID}.${version}.nupkg`;
const unpacked = path.join(vendor, 'onnxruntime-gpu');
const vendored = fs.existsSync(vendor)
  ? fs.readdirSync(vendor).filter((f) => f.toLowerCase().startsWith(`${ID}.`) && f.toLowerCase().endsWith('.nupkg'))
  : [];

if (fs.existsSync(path.join(unpacked, REQUIRED[1]))) {
  say(`copying the provider files from ${unpacked} (they must be onnxruntime ${version}'s)`);
  for (const f of [...REQUIRED, ...OPTIONAL]) {
    if (fs.existsSync(path.join(unpacked, f))) fs.copyFileSync(path.join(unpacked, f), path.join(binDir, f));
  }
} else if (vendored.length > 0) {
  const match = vendored.find((f) => f.toLowerCase() === nupkgName);
  if (match === undefined) {
    fail(1, `${vendor} holds ${vendored.join(', ')}, but onnxruntime-node is ${version}: it needs ${nupkgName} (same version)`);
  }
  say(`extracting ${match}`);
  await extract(path.join(vendor, match));
} else if (process.env.ORT_NUGET_MIRROR) {
  const base = process.env.ORT_NUGET_MIRROR.replace(/\/?$/, '/');
  const url = `${base}${ID}/${version}/${nupkgName}`;
  say(`downloading ${url}`);
  const res = await fetch(url).catch((e) => fail(1, `cannot reach ${url}: ${e.cause?.message ?? e.message}`));
  if (!res.ok) fail(1, `${url} answered ${res.status}`);
  const tmp = path.join(fs.mkdtempSync(path.join(pkg, '.ort-cuda-')), nupkgName);
  fs.writeFileSync(tmp, Buffer.from(await res.arrayBuffer()));
  await extract(tmp);
  fs.rmSync(path.dirname(tmp), { recursive: true, force: true });
} else if (process.env.ONNXRUNTIME_NODE_INSTALL) {
  say(`running onnxruntime-node's installer (ONNXRUNTIME_NODE_INSTALL=${process.env.ONNXRUNTIME_NODE_INSTALL}; nuget.org)`);
  const r = spawnSync(process.execPath, [path.join(pkg, 'script', 'install.js')], { cwd: pkg, stdio: 'inherit' });
  if (r.status !== 0) fail(1, `onnxruntime-node's installer failed (exit ${r.status ?? r.signal})`);
} else {
  fail(
    2,
    'no source for the CUDA provider. One of:',
    `  copy ${nupkgName} (or its ${IN_PACKAGE}*.so) into infra/docker/vendor/ (…/onnxruntime-gpu/ for the .so files);`,
    '  --build-arg ORT_NUGET_MIRROR=<NuGet v3 package-content base URL>;',
    '  --build-arg ONNXRUNTIME_NODE_INSTALL=cuda12 (downloads from nuget.org).',
  );
}

const ELF = Buffer.from([0x7f, 0x45, 0x4c, 0x46]);
for (const f of REQUIRED) {
  const p = path.join(binDir, f);
  if (!fs.existsSync(p)) fail(1, `${p} is missing after the install`);
  const head = Buffer.alloc(4);
  const fd = fs.openSync(p, 'r');
  fs.readSync(fd, head, 0, 4, 0);
  fs.closeSync(fd);
  if (!head.equals(ELF)) fail(1, `${p} is not a shared library (no ELF header)`);
}
const have = [...REQUIRED, ...OPTIONAL].filter((f) => fs.existsSync(path.join(binDir, f)));
say(`ok: ${have.join(', ')} in ${binDir}`);
