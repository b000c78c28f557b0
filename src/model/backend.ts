/**
 * Picks the TensorFlow.js backend, after installing this project's tfjs patches (kernels/install.ts:
 * the one place that changes tfjs's process-wide state; it first checks the tfjs version).
 *
 * `auto` prefers native TensorFlow (tfjs-node-gpu, then tfjs-node — optional dependencies that
 * only install where libtensorflow can be fetched or mirrored), then wasm (ships its own .wasm,
 * runs anywhere), then the pure-JS cpu backend (30–100× slower; last resort).
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { AppError } from '../errors.js';
import { installTfjsPatches } from './kernels/install.js';

export type BackendPreference = 'auto' | 'tensorflow' | 'wasm' | 'cpu';

const NATIVE_PACKAGES = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'];

let current: { pref: BackendPreference; result: Promise<string> } | undefined;

/**
 * Selects a backend (idempotent: a repeated call with the same preference returns the first
 * result). Resolves with the backend name actually in use.
 */
export function initBackend(pref: BackendPreference, log: (msg: string) => void = () => {}): Promise<string> {
  if (current && current.pref === pref) return current.result;
  const result = select(pref, log);
  current = { pref, result };
  // A failed attempt must not stick: the next call may try again (e.g. after a config fix).
  result.catch(() => {
    if (current?.result === result) current = undefined;
  });
  return result;
}

async function select(pref: BackendPreference, log: (msg: string) => void): Promise<string> {
  installTfjsPatches();
  const tried: string[] = [];
  if (pref === 'auto' || pref === 'tensorflow') {
    for (const pkg of NATIVE_PACKAGES) {
      const why = await tryImport(pkg);
      if (why === null && (await trySet('tensorflow'))) return done('tensorflow', `${pkg}`, log);
      tried.push(`${pkg}: ${why ?? 'setBackend(tensorflow) failed'}`);
    }
    if (pref === 'tensorflow') {
      throw new AppError(
        'config_invalid',
        `TFJS_BACKEND=tensorflow but no native TensorFlow backend could be loaded (${tried.join('; ')})`,
      );
    }
  }
  if (pref === 'auto' || pref === 'wasm') {
    if (await trySet('wasm')) return done('wasm', 'tfjs-backend-wasm', log);
    tried.push('wasm: setBackend(wasm) failed');
    if (pref === 'wasm') throw new AppError('config_invalid', 'TFJS_BACKEND=wasm but the wasm backend failed to start');
  }
  if (await trySet('cpu')) {
    if (pref === 'auto') log(`tfjs: falling back to the slow cpu backend (${tried.join('; ')})`);
    return done('cpu', 'tfjs-backend-cpu', log);
  }
  throw new AppError('config_invalid', `no TensorFlow.js backend could be started (${tried.join('; ')})`);
}

function done(name: string, from: string, log: (msg: string) => void): string {
  log(`tfjs backend: ${name} (${from})`);
  return name;
}

/** Returns null on success, else a short reason. */
async function tryImport(pkg: string): Promise<string | null> {
  try {
    // A variable specifier keeps TypeScript from requiring the optional packages at build time.
    const specifier: string = pkg;
    await import(specifier);
    return null;
  } catch (err) {
    const code = (err as { code?: string }).code;
    return code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND' ? 'not installed' : String((err as Error).message ?? err).split('\n')[0];
  }
}

async function trySet(name: string): Promise<boolean> {
  try {
    // setBackend reports failure by resolving false, not by throwing: check it. The cpu backend
    // prints a multi-line "install tfjs-node" banner through console.warn on its first tensor
    // write; we log what we chose ourselves, and the CLI's stderr must stay one line per problem,
    // so that first write happens here with console.warn muted.
    const warn = console.warn;
    if (name === 'cpu') console.warn = () => {};
    let ok: boolean;
    try {
      ok = await tf.setBackend(name);
      if (ok && name === 'cpu') tf.tidy(() => tf.scalar(0));
    } finally {
      console.warn = warn;
    }
    if (!ok) return false;
    await tf.ready();
    return tf.getBackend() === name;
  } catch {
    return false;
  }
}
