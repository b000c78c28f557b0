/**
 * BACKBONE=hf:… as processes see it, against a hub on loopback: the server's first start pulls
 * into the blob store (progress in its log), its second start and a second process (`dtl-host
 * backbone pull`, `dtl-host predict --backbone hf:…`) find it there with the hub gone; the CLI draws
 * its progress on stderr.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempDir } from '../helpers/db.js';
import { startHubServer, type HubServer } from '../helpers/hub-server.js';
import { FIXTURE_BACKBONE } from '../routes/harness.js';
import { ROOT, spawnServer } from './spawn.js';

const run = promisify(execFile);
const read = (name: string) => new Uint8Array(readFileSync(path.join(FIXTURE_BACKBONE, name)));

let hub: HubServer;
let dir: string;
beforeAll(async () => {
  hub = await startHubServer({
    'acme/tiny-vit': {
      main: new Map([
        ['config.json', read('config.json')],
        ['preprocessor_config.json', read('preprocessor_config.json')],
        ['model.safetensors', read('model.safetensors')],
      ]),
    },
  });
  dir = await makeTempDir('dtl-hub-proc');
});
afterAll(async () => {
  await hub.close();
  await rm(dir, { recursive: true, force: true });
});

async function cli(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [path.join(ROOT, 'bin/dtl-host.js'), ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', ...env },
      timeout: 60_000,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

describe('BACKBONE=hf:… across processes', () => {
  // These tests share one data folder and run in order: the first pulls, the others read.
  let gets = 0;
  const env = () => ({ PORT: '0', HOST: '127.0.0.1', DATA_DIR: path.join(dir, 'data'), BACKBONE: 'hf:acme/tiny-vit', HF_ENDPOINT: hub.url, WORKER_ENABLED: 'false', TFJS_BACKEND: 'wasm' });

  it('the first server start pulls into the blob store, progress in its log', async () => {
    const first = spawnServer(env());
    await first.ready;
    first.proc.kill('SIGTERM');
    expect((await first.exited).code).toBe(0);
    const msgs = first.logs().map((l) => l.msg);
    expect(msgs).toContain('backbone: downloading from the hub');
    expect(first.logs().some((l) => l.msg === 'backbone: download progress' && l.file === 'model.safetensors' && l.percent === 100)).toBe(true);
    expect(msgs).toContain('backbone: pulled from the hub into the blob store');
    gets = hub.requests.filter((r) => r.startsWith('GET')).length;
    expect(gets).toBe(3);
  });

  it('the second server start reads it from the blob store with the hub gone', async () => {
    expect(gets).toBe(3);
    const second = spawnServer({ ...env(), HF_ENDPOINT: 'http://127.0.0.1:1' });
    await second.ready;
    second.proc.kill('SIGTERM');
    expect((await second.exited).code).toBe(0);
    expect(second.logs().map((l) => l.msg)).toContain('backbone: read from the blob store (pulled before)');
    expect(hub.requests.filter((r) => r.startsWith('GET')).length).toBe(gets);
  });

  it('other processes (backbone pull, predict --backbone hf:…) read the same blob store with the hub gone', async () => {
    expect(gets).toBe(3);

    const pull = await cli(['backbone', 'pull', 'hf:acme/tiny-vit'], { DATA_DIR: path.join(dir, 'data'), HF_ENDPOINT: 'http://127.0.0.1:1' });
    expect(pull.code, pull.stderr).toBe(0);
    expect(JSON.parse(pull.stdout)).toMatchObject({ spec: 'hf:acme/tiny-vit@main', pulled: false, bytes: 171800 + 247 + 171 });
    expect(pull.stderr).toMatch(/already in the blob store/);

    // dtl-host predict --backbone hf:… reads the same store: the golden logits, no hub.
    const expected = JSON.parse(readFileSync(path.join(FIXTURE_BACKBONE, 'expected.json'), 'utf8')) as { cases: Array<{ image: string; logits: number[] }> };
    const predict = await cli(
      ['predict', '--backbone', 'hf:acme/tiny-vit', '--adapter', path.join(FIXTURE_BACKBONE, 'adapter.safetensors'), ...expected.cases.map((c) => path.join(FIXTURE_BACKBONE, c.image))],
      { DATA_DIR: path.join(dir, 'data'), HF_ENDPOINT: 'http://127.0.0.1:1', TFJS_BACKEND: 'wasm' },
    );
    expect(predict.code, predict.stderr).toBe(0);
    const out = JSON.parse(predict.stdout) as Array<{ logits: number[] }>;
    expected.cases.forEach((c, i) => c.logits.forEach((l, j) => expect(Math.abs(out[i].logits[j] - l)).toBeLessThan(1e-4)));
    expect(hub.requests.filter((r) => r.startsWith('GET')).length).toBe(gets);
  });

  it('dtl-host backbone pull: progress on stderr, a summary on stdout; a malformed spec is a usage error', async () => {
    const env = { BLOB_DIR: path.join(dir, 'cli-blobs'), DATA_DIR: path.join(dir, 'cli-data'), HF_ENDPOINT: hub.url };
    const r = await cli(['backbone', 'pull', 'hf:acme/tiny-vit'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/downloading model\.safetensors \(0\.2 MB\)/);
    expect(r.stderr).toMatch(/model\.safetensors {2}\[#{20}\] {2}100\.0% {2}0\.2 MB \/ 0\.2 MB/);
    expect(JSON.parse(r.stdout)).toMatchObject({ pulled: true, files: [{ name: 'config.json' }, { name: 'preprocessor_config.json' }, { name: 'model.safetensors', size: 171800 }] });

    const usage = await cli(['backbone', 'pull', 'acme/tiny-vit'], env);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/expected hf:<org>\/<name>\[@revision\] \(see 'dtl-host backbone --help'\)/);
  });
});
