/**
 * The tfjs patches have one owner (src/model/kernels/install.ts): nothing is patched by importing
 * the model core, backend start-up installs everything after checking the tfjs version, nothing
 * else in src/ changes tfjs's global state, and the memory probe unpatches what it watched.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors.js';
import {
  checkTfjsVersion,
  initBackend,
  leanGradientsInstalled,
  measurePeakBytes,
  TFJS_PATCHED_VERSION,
  wasmKernelFixesInstalled,
} from '../../src/model/index.js';
import { installTfjsPatches } from '../../src/model/kernels/install.js';

function errorOf(f: () => unknown): AppError {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    return err as AppError;
  }
  throw new Error('expected an AppError');
}

const patched = () => ({
  leanGradients: leanGradientsInstalled(),
  wasmKernels: wasmKernelFixesInstalled(),
  geluKernel: tf.getKernel('DtlGelu', 'wasm') !== undefined,
  fusedMatMulGradient: tf.getGradient('_FusedMatMul') !== undefined,
  engineGradients: Object.prototype.hasOwnProperty.call(tf.engine(), 'gradients'),
});

describe('tfjs patches', () => {
  // Runs first in this file's fresh process: only the imports above have happened.
  it('importing the model core patches nothing; a tfjs version other than the patched one is refused before anything is installed', () => {
    const none = { leanGradients: false, wasmKernels: false, geluKernel: false, fusedMatMulGradient: false, engineGradients: false };
    expect(patched()).toEqual(none);
    const err = errorOf(() => installTfjsPatches({ 'tfjs-core': '4.23.0', 'tfjs-backend-wasm': TFJS_PATCHED_VERSION }));
    expect(err.code).toBe('config_invalid');
    expect(err.message).toContain(`@tensorflow/tfjs-core: expected ${TFJS_PATCHED_VERSION}, found 4.23.0`);
    expect(err.message).not.toContain('tfjs-backend-wasm:');
    expect(patched()).toEqual(none);
  });

  it('the version guard names every package that differs, and passes the installed tfjs', () => {
    const err = errorOf(() => checkTfjsVersion({ 'tfjs-core': '5.0.0', 'tfjs-backend-wasm': '4.21.0' }));
    expect(err.code).toBe('config_invalid');
    expect(err.message).toMatch(/tfjs-core: expected 4\.22\.0, found 5\.0\.0; @tensorflow\/tfjs-backend-wasm: expected 4\.22\.0, found 4\.21\.0/);
    expect(err.message).toMatch(/src\/model\/kernels/);
    expect(() => checkTfjsVersion()).not.toThrow();
    expect(() => checkTfjsVersion({ 'tfjs-core': TFJS_PATCHED_VERSION, 'tfjs-backend-wasm': TFJS_PATCHED_VERSION })).not.toThrow();
  });

  it('backend start-up installs every patch', async () => {
    expect(await initBackend('wasm')).toBe('wasm');
    expect(patched()).toEqual({ leanGradients: true, wasmKernels: true, geluKernel: true, fusedMatMulGradient: true, engineGradients: true });
  });

  it('the memory probe leaves the wasm buffer table unpatched after it returns (nested, and when fn throws)', async () => {
    await initBackend('wasm');
    const table = (tf.backend() as unknown as { dataIdMap: Record<string, unknown> }).dataIdMap;
    const before = { own: Object.getOwnPropertyNames(table).sort(), set: table.set, delete: table.delete };
    const now = () => ({ own: Object.getOwnPropertyNames(table).sort(), set: table.set, delete: table.delete });
    const a = tf.ones([1000]);
    let inner = -1;
    const outer = await measurePeakBytes(() => {
      expect(table.set).not.toBe(before.set); // watched while fn runs
      const x = tf.add(a, 1);
      void measurePeakBytes(() => tf.tidy(() => tf.mul(x, 2).sum())).then((m) => {
        inner = m.peakBytes;
        m.result.dispose();
      });
      expect(table.set).not.toBe(before.set); // still watched after the nested probe returned
      return x;
    });
    await Promise.resolve();
    expect(now()).toEqual(before);
    expect(outer.peakBytes).toBeGreaterThanOrEqual(8000); // x, and the nested product while x lived
    expect(inner).toBeGreaterThanOrEqual(4000);
    outer.result.dispose();
    await expect(measurePeakBytes(() => tf.tidy(() => {
      tf.add(a, 2);
      throw new Error('boom');
    }))).rejects.toThrow('boom');
    expect(now()).toEqual(before);
    a.dispose();
  });

  it('nothing in src/ outside kernels/install.ts registers kernels or gradients or patches tfjs objects', () => {
    const root = path.resolve(__dirname, '../../src');
    const files = (readdirSync(root, { recursive: true }) as string[]).filter((f) => f.endsWith('.ts')).map((f) => path.join('src', f));
    const patching = /\b(?:un)?registerKernel\(|\bregisterGradient\(|\bregisterBackend\(|\.gradients\s*=[^=]|\.(?:set|delete)\s*=[^=]|\bdataIdMap\b[^;]*=[^=]/;
    const found = files.filter((f) => patching.test(readFileSync(path.resolve(root, '..', f), 'utf8')));
    expect(found).toEqual([path.join('src', 'model', 'kernels', 'install.ts')]);
  });
});
