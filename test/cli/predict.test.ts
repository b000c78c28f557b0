/**
 * `dtl-host predict` as a user runs it: a child process on the real files, on wasm and on cpu, with
 * the backbone on tfjs and on onnxruntime.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAdapter, initBackend, loadAdapter, loadBackboneFromDir, saveAdapter } from '../../src/model/index.js';
import { tinyBackbone, tinySpec } from '../helpers/tiny-backbone.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const FIXTURES = path.join(ROOT, 'test/fixtures');
const run = promisify(execFile);

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function cli(args: string[], env: Record<string, string> = {}): Promise<Result> {
  try {
    const { stdout, stderr } = await run(process.execPath, [path.join(ROOT, 'bin/dtl-host.js'), ...args], {
      cwd: ROOT,
      env: { ...process.env, TFJS_BACKEND: 'wasm', ...env },
      timeout: 60_000,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** A failure is exactly one line on stderr, no stack trace, nothing on stdout. */
function expectOneLineError(r: Result, code: number, pattern: RegExp): void {
  expect(r.code, r.stderr).toBe(code);
  expect(r.stdout).toBe('');
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

interface Expected {
  cases: Array<{ image: string; logits: number[]; probabilities: number[]; top1: string }>;
}

describe('dtl-host predict', () => {
  describe.each([
    ['wasm', 'tfjs'],
    ['wasm', 'onnxruntime'],
    ['cpu', 'tfjs'],
  ])('golden fixtures on tfjs %s, backbone engine %s', (backend, engine) => {
    it.each(['dtl-golden-hf', 'dtl-golden-timm-plus'])('%s matches expected.json to 1e-4', async (name) => {
      const dir = path.join(FIXTURES, name);
      const expected = JSON.parse(await readFile(path.join(dir, 'expected.json'), 'utf8')) as Expected;
      const images = expected.cases.map((c) => path.join(dir, c.image));
      const r = await cli(['predict', '--backbone', dir, '--adapter', path.join(dir, 'adapter.safetensors'), '--top', '2', ...images], { TFJS_BACKEND: backend, BACKBONE_ENGINE: engine });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toBe('');
      const out = JSON.parse(r.stdout) as Array<{ image: string; labels: string[]; logits: number[]; probabilities: number[]; top: Array<{ label: string; probability: number }> }>;
      expect(out).toHaveLength(expected.cases.length);
      out.forEach((o, i) => {
        const c = expected.cases[i];
        expect(Object.keys(o)).toEqual(['image', 'labels', 'logits', 'probabilities', 'top']);
        expect(o.image).toBe(images[i]);
        expect(o.labels).toEqual(['cat', 'dog', 'fox']);
        o.logits.forEach((l, j) => expect(Math.abs(l - c.logits[j]), `logit ${j} of ${c.image}`).toBeLessThan(1e-4));
        o.probabilities.forEach((p, j) => expect(Math.abs(p - c.probabilities[j])).toBeLessThan(1e-4));
        expect(o.probabilities.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 10);
        expect(o.top).toHaveLength(2);
        expect(o.top[0].label).toBe(c.top1);
        expect(o.top[0].probability).toBeGreaterThanOrEqual(o.top[1].probability);
        expect(o.top[0].probability).toBe(Math.max(...o.probabilities));
      });
    });
  });

  describe('errors: one line on stderr, no stack, non-zero exit', () => {
    let tmp: string;
    const hf = path.join(FIXTURES, 'dtl-golden-hf');
    const adapter = path.join(hf, 'adapter.safetensors');
    beforeAll(async () => {
      tmp = await mkdtemp(path.join(os.tmpdir(), 'dtl-cli-'));
    });
    afterAll(async () => {
      await rm(tmp, { recursive: true, force: true });
    });

    it('default --top covers every label when there are fewer than 5', async () => {
      const r = await cli(['predict', '--backbone', hf, '--adapter', adapter, path.join(hf, 'input-1.png')]);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)[0].top).toHaveLength(3);
    });

    it("applies the adapter file's calibrated temperature to the probabilities, not to the logits", async () => {
      await initBackend('wasm');
      const b = await loadBackboneFromDir(hf);
      const { adapter: a, meta } = loadAdapter(await readFile(adapter), b.config);
      a.temperature = 2.5;
      const hot = path.join(tmp, 'hot.safetensors');
      await writeFile(hot, saveAdapter(a, meta));
      a.dispose();
      b.dispose();
      const image = path.join(hf, 'input-0.png');
      const [plain, warm] = await Promise.all([
        cli(['predict', '--backbone', hf, '--adapter', adapter, image]),
        cli(['predict', '--backbone', hf, '--adapter', hot, image]),
      ]);
      expect(warm.code, warm.stderr).toBe(0);
      const p = JSON.parse(plain.stdout)[0] as { logits: number[]; probabilities: number[] };
      const w = JSON.parse(warm.stdout)[0] as { logits: number[]; probabilities: number[] };
      expect(w.logits).toEqual(p.logits);
      const e = p.logits.map((l) => Math.exp(l / 2.5));
      const sum = e.reduce((x, y) => x + y, 0);
      w.probabilities.forEach((q, j) => expect(q).toBeCloseTo(e[j] / sum, 10));
    });

    it('usage errors exit 2', async () => {
      expectOneLineError(await cli(['predict', '--backbone', hf, path.join(hf, 'input-0.png')]), 2, /--adapter FILE is required/);
      expectOneLineError(await cli(['predict', '--backbone', hf, '--adapter', adapter, '--top', '0', 'x.png']), 2, /--top must be a positive integer/);
      expectOneLineError(await cli(['frobnicate']), 2, /unknown command 'frobnicate'/);
    });

    it('a non-image and a truncated image are named in an invalid_image error', async () => {
      const png = await readFile(path.join(hf, 'input-2.png'));
      const cut = path.join(tmp, 'cut.png');
      await writeFile(cut, png.subarray(0, png.length - 200));
      const [notImage, truncated, missing] = await Promise.all([
        cli(['predict', '--backbone', hf, '--adapter', adapter, path.join(hf, 'input-0.png'), path.join(hf, 'config.json')]),
        cli(['predict', '--backbone', hf, '--adapter', adapter, cut]),
        cli(['predict', '--backbone', hf, '--adapter', adapter, path.join(tmp, 'nope.png')]),
      ]);
      expectOneLineError(notImage, 1, /config\.json: not an image.*\(invalid_image\)$/);
      expectOneLineError(truncated, 1, /cut\.png: image is truncated or corrupt.*\(invalid_image\)$/);
      expectOneLineError(missing, 1, /image '.*nope\.png' not found \(not_found\)$/);
    });

    it('an adapter for another backbone and a broken backbone folder are refused', async () => {
      await initBackend('wasm');
      const small = tinyBackbone({ width: 8, depth: 3 });
      const a = createAdapter(small.config, tinySpec(), { seed: 1 });
      const file = path.join(tmp, 'small.safetensors');
      await writeFile(file, saveAdapter(a));
      a.dispose();
      small.dispose();
      const [mismatch, noBackbone, badEnv] = await Promise.all([
        cli(['predict', '--backbone', hf, '--adapter', file, path.join(hf, 'input-0.png')]),
        cli(['predict', '--backbone', tmp, '--adapter', adapter, path.join(hf, 'input-0.png')]),
        cli(['predict', '--backbone', hf, '--adapter', adapter, path.join(hf, 'input-0.png')], { TFJS_BACKEND: 'gpu-please' }),
      ]);
      expectOneLineError(mismatch, 1, /width 8.*\(adapter_backbone_mismatch\)$/);
      expectOneLineError(noBackbone, 1, /has no model\.safetensors \(invalid_backbone\)$/);
      expectOneLineError(badEnv, 1, /TFJS_BACKEND.*\(config_invalid\)$/);
    });
  });
});
