/**
 * BACKBONE=hf:… against a hub on loopback (test/helpers/hub-server.ts, never the internet): the
 * first load downloads, verifies and stores; later loads read the blob store without the hub;
 * a cut, short, wrongly hashed or missing file fails with one clear error and leaves no backbone
 * a reader could load, only whole verified files the retry reuses.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { once } from 'node:events';
import { readdir, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors.js';
import { backboneFeatures, initBackend, loadBackboneFromDir, readSafetensors, writeSafetensors, type Backbone } from '../../src/model/index.js';
import { fileKey, manifestKey, readHubBackbone } from '../../src/services/hub-backbone.js';
import { parseHubSpec } from '../../src/services/hub-client.js';
import { loadConfiguredBackbone, type BackboneSourceConfig } from '../../src/services/backbone.js';
import { DiskBlobStore, listAll } from '../../src/storage/index.js';
import { makeTempDir } from '../helpers/db.js';
import { startS3 } from '../helpers/s3.js';
import { startHubServer, type HubRepos, type HubServer } from '../helpers/hub-server.js';

const FIXTURE = path.resolve(import.meta.dirname, '../fixtures/dtl-golden-hf');
const read = (name: string) => new Uint8Array(readFileSync(path.join(FIXTURE, name)));

/** The fixture's weights as two shards plus the index Hugging Face writes for them. */
function sharded(): Map<string, Uint8Array> {
  const st = readSafetensors(read('model.safetensors'));
  const names = [...st.tensors.keys()];
  const half = names.length >> 1;
  const shard = (list: string[]) => writeSafetensors(list.map((name) => ({ name, shape: st.tensors.get(name)!.shape, data: st.tensors.get(name)!.data })));
  const files = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
  const weightMap = Object.fromEntries(names.map((n, i) => [n, files[i < half ? 0 : 1]]));
  return new Map<string, Uint8Array>([
    ['config.json', read('config.json')],
    [files[0], shard(names.slice(0, half))],
    [files[1], shard(names.slice(half))],
    ['model.safetensors.index.json', Buffer.from(JSON.stringify({ metadata: {}, weight_map: weightMap }))],
  ]);
}

const REPOS: HubRepos = {
  'acme/tiny-vit': {
    main: new Map([
      ['config.json', read('config.json')],
      ['preprocessor_config.json', read('preprocessor_config.json')],
      ['model.safetensors', read('model.safetensors')],
    ]),
  },
  'acme/tiny-vit-sharded': { 'v1.0': sharded() },
};

let hub: HubServer;
let dir: string;
let blobs: DiskBlobStore;
let reference: Backbone;
const held: Backbone[] = [];

const cfg = (backbone: string, extra: Partial<BackboneSourceConfig> = {}): BackboneSourceConfig => ({
  BACKBONE: backbone,
  HF_ENDPOINT: hub.url,
  HF_TOKEN: undefined,
  paths: { dataDir: dir },
  ...extra,
});

async function load(backbone: string, extra: Partial<BackboneSourceConfig> = {}): Promise<Backbone> {
  const b = await loadConfiguredBackbone(cfg(backbone, extra), blobs);
  held.push(b);
  return b;
}

/** What a failed pull may leave: no manifest, only whole files named by their own hash, no temp files. */
async function expectNothingHalfWritten(spec: string): Promise<void> {
  expect(await blobs.head(manifestKey(parseHubSpec(spec)))).toBeNull();
  for (const { key } of await listAll(blobs, 'backbones/')) {
    expect(key).toMatch(/^backbones\/sha256\/[0-9a-f]{64}$/);
    expect(createHash('sha256').update(await blobs.getBuffer(key)).digest('hex')).toBe(key.split('/').pop());
  }
  expect(await readdir(path.join(dir, 'tmp')).catch(() => [])).toEqual([]);
}

/** A loopback URL nothing listens on. */
async function closedPort(): Promise<string> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return `http://127.0.0.1:${port}`;
}

async function rejection(p: Promise<unknown>): Promise<AppError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AppError);
  return err as AppError;
}

beforeAll(async () => {
  await initBackend('wasm');
  hub = await startHubServer(REPOS);
  reference = await loadBackboneFromDir(FIXTURE);
});
afterAll(async () => {
  await hub.close();
  reference.dispose();
});
beforeEach(async () => {
  dir = await makeTempDir('dtl-hub');
  blobs = await DiskBlobStore.open({ root: path.join(dir, 'blobs') });
  hub.requests.length = 0;
});
afterEach(async () => {
  for (const b of held.splice(0)) b.dispose();
  await blobs.close();
  await rm(dir, { recursive: true, force: true });
});

describe('hub specs', () => {
  it('parses org/name[@revision] and refuses anything else as config_invalid', () => {
    expect(parseHubSpec('hf:google/vit-base-patch16-224-in21k')).toEqual({ repo: 'google/vit-base-patch16-224-in21k', revision: 'main' });
    expect(parseHubSpec('hf:a/b@refs/pr/3')).toEqual({ repo: 'a/b', revision: 'refs/pr/3' });
    for (const bad of ['hf:', 'hf:onlyname', 'hf:a/b/c', 'hf:../b', 'hf:a/b@', 'hf:a/b@x/../y', 'hf:a b/c']) {
      expect(() => parseHubSpec(bad), bad).toThrow(expect.objectContaining({ code: 'config_invalid' }));
    }
  });
});

describe('BACKBONE=hf:…', () => {
  it('downloads and stores on first load; later loads and other store handles read the blob store without the hub', async () => {
    const first = await load('hf:acme/tiny-vit');
    expect(first.identity).toBe(reference.identity);
    expect(hub.requests.filter((r) => r.startsWith('GET'))).toHaveLength(3);
    const manifest = JSON.parse((await blobs.getBuffer('backbones/hf/acme/tiny-vit/main.json')).toString()) as { commit: string; files: unknown[] };
    expect(manifest.commit).toMatch(/^[0-9a-f]{40}$/);
    expect(manifest.files).toHaveLength(3);
    expect(await readdir(path.join(dir, 'tmp'))).toEqual([]);

    hub.requests.length = 0;
    const other = await DiskBlobStore.open({ root: path.join(dir, 'blobs') });
    try {
      const again = await loadConfiguredBackbone(cfg('hf:acme/tiny-vit', { HF_ENDPOINT: await closedPort() }), other);
      held.push(again);
      expect(again.identity).toBe(reference.identity);
    } finally {
      await other.close();
    }
    expect(hub.requests).toEqual([]);
  });

  it('loads a sharded checkpoint (index + shards) to the same weights as the single file', async () => {
    const b = await load('hf:acme/tiny-vit-sharded@v1.0');
    expect(hub.requests.filter((r) => r.startsWith('GET')).length).toBe(4);
    const s = b.config.imageSize;
    const pixels = tf.randomNormal([2, s, s, 3], 0, 1, 'float32', 7) as tf.Tensor4D;
    const [x, y] = [backboneFeatures(b, pixels), backboneFeatures(reference, pixels)];
    // No preprocessor_config.json in this repo: same weights, default mean/std.
    expect(tf.max(tf.abs(tf.sub(x, y))).dataSync()[0]).toBe(0);
    tf.dispose([pixels, x, y]);
  });

  it.each([
    ['cut', 'model.safetensors', 'unavailable', /download of http:\/\/127\.0\.0\.1:\d+\/acme\/tiny-vit\/resolve\/main\/model\.safetensors broke off after \d+ of 171800 bytes/],
    ['short', 'model.safetensors', 'unavailable', /model\.safetensors was cut short: 85900 of 171800 bytes; nothing was kept/],
    ['wrong-hash', 'model.safetensors', 'invalid_backbone', /model\.safetensors has sha256 [0-9a-f]{64}, but the hub reports [0-9a-f]{64}; nothing was kept/],
    ['wrong-hash', 'config.json', 'invalid_backbone', /config\.json has git sha1 [0-9a-f]{40}, but the hub reports [0-9a-f]{40}/],
    ['missing', 'config.json', 'invalid_backbone', /resolve\/main\/config\.json not found \(HTTP 404\): acme\/tiny-vit has no 'config\.json' at revision 'main'/],
    ['missing', 'model.safetensors', 'invalid_backbone', /model\.safetensors not found \(HTTP 404\), nor model\.safetensors\.index\.json/],
  ] as const)('a %s %s: one clear error, nothing half-written, and the retry completes', async (fault, file, code, message) => {
    hub.fault(file, fault);
    try {
      const err = await rejection(load('hf:acme/tiny-vit'));
      expect(err.code).toBe(code);
      expect(err.message).toMatch(message);
      await expectNothingHalfWritten('hf:acme/tiny-vit');
    } finally {
      hub.fault(file, undefined);
    }
    expect((await load('hf:acme/tiny-vit')).identity).toBe(reference.identity);
  });

  it('a retry after a failed shard reuses the shards already stored whole', async () => {
    const shards = REPOS['acme/tiny-vit-sharded']['v1.0'];
    hub.fault('model-00002-of-00002.safetensors', 'cut');
    try {
      expect((await rejection(load('hf:acme/tiny-vit-sharded@v1.0'))).code).toBe('unavailable');
      await expectNothingHalfWritten('hf:acme/tiny-vit-sharded@v1.0');
    } finally {
      hub.fault('model-00002-of-00002.safetensors', undefined);
    }
    hub.requests.length = 0;
    await load('hf:acme/tiny-vit-sharded@v1.0');
    const cdnGets = hub.requests.filter((r) => r.startsWith('GET /cdn/'));
    expect(cdnGets).toEqual([`GET /cdn/${createHash('sha256').update(shards.get('model-00002-of-00002.safetensors')!).digest('hex')}`]);
  });

  it('offline: names the URL and how to mirror it', async () => {
    const endpoint = await closedPort();
    const err = await rejection(load('hf:acme/tiny-vit', { HF_ENDPOINT: endpoint }));
    expect(err.code).toBe('unavailable');
    expect(err.message.startsWith(`cannot reach ${endpoint}/acme/tiny-vit/resolve/main/config.json (ECONNREFUSED)`)).toBe(true);
    expect(err.message).toMatch(/set HF_ENDPOINT to the mirror/);
    expect(err.message).toMatch(/dtl-host backbone pull/);
    await expectNothingHalfWritten('hf:acme/tiny-vit');
  });

  it('a blob that no longer matches its manifest is refused on load, not used', async () => {
    await load('hf:acme/tiny-vit');
    const manifest = JSON.parse((await blobs.getBuffer(manifestKey(parseHubSpec('hf:acme/tiny-vit')))).toString()) as Parameters<typeof readHubBackbone>[0];
    const model = manifest.files.find((f) => f.name === 'model.safetensors')!;
    const bytes = await blobs.getBuffer(fileKey(model.sha256));
    bytes[bytes.length - 1] ^= 1;
    await writeFile(path.join(dir, 'blobs', 'backbones', 'sha256', model.sha256), bytes);
    const err = await rejection(load('hf:acme/tiny-vit'));
    expect(err.code).toBe('invalid_backbone');
    expect(err.message).toMatch(/'model\.safetensors'\) does not match its sha256; pull it again/);
  });
});

describe('on S3', () => {
  it('two replicas on one bucket: the first pulls, the second reads the bucket without the hub', async () => {
    const s3 = await startS3();
    try {
      const a = await loadConfiguredBackbone(cfg('hf:acme/tiny-vit'), s3.store);
      held.push(a);
      expect(a.identity).toBe(reference.identity);
      hub.requests.length = 0;
      const b = await loadConfiguredBackbone(cfg('hf:acme/tiny-vit', { HF_ENDPOINT: await closedPort() }), s3.makeStore());
      held.push(b);
      expect(b.identity).toBe(reference.identity);
      expect(hub.requests).toEqual([]);
      expect((await listAll(s3.store, 'backbones/')).map((e) => e.key)).toEqual(expect.arrayContaining(['backbones/hf/acme/tiny-vit/main.json']));
    } finally {
      await s3.stop();
    }
  });
});

describe('gated repositories', () => {
  let gated: HubServer;
  beforeAll(async () => {
    gated = await startHubServer(REPOS, { token: 'hf_secret_token' });
  });
  afterAll(() => gated.close());

  it('without HF_TOKEN: says to set it; with it: pulls, and the token never goes to the CDN', async () => {
    const err = await rejection(load('hf:acme/tiny-vit', { HF_ENDPOINT: gated.url }));
    expect(err.code).toBe('invalid_backbone');
    expect(err.message).toMatch(/HTTP 401.*set HF_TOKEN/);
    const b = await load('hf:acme/tiny-vit', { HF_ENDPOINT: gated.url, HF_TOKEN: 'hf_secret_token' });
    expect(b.identity).toBe(reference.identity);
    expect(gated.requests.some((r) => r.startsWith('GET /cdn/'))).toBe(true);
    expect(gated.cdnAuthorization).toEqual([]);
  });
});
