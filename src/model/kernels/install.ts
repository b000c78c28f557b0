/**
 * Who installs what into tfjs: every change this project makes to tfjs's process-wide state is
 * made here and nowhere else (test/model/tfjs-patches.test.ts greps src/ for it). The patches
 * themselves live beside this file; README.md lists each one, why, and its test.
 *
 *   1. kernel replacements   wasm Slice, SplitV, GatherV2, Identity, BatchMatMul (wasm-kernels.ts, wasm-matmul.ts)
 *   2. GELU kernels          wasm DtlGelu, DtlGeluGrad                     (gelu.ts, wasm-simd.ts)
 *   3. gradient engine       engine.gradients → lean back-propagation       (lean-gradients.ts)
 *   4. gradients             _FusedMatMul, DtlGelu                          (matmul-gradients.ts, gelu.ts)
 *   5. memory probe hook     the wasm backend's dataIdMap.set/delete, only while measurePeakBytes runs (memory.ts)
 *
 * installTfjsPatches (1–4) is called once, by backend start-up (backend.ts initBackend), after
 * checking that the installed tfjs is the release the patches were written for. The uninstall /
 * reinstall pairs of 1–3 exist for tests and A/B measurements only.
 */
import * as tf from '@tensorflow/tfjs';
import { GELU_GRAD_KERNEL, GELU_KERNEL, geluGradient, geluGradKernel, geluKernel } from './gelu.js';
import { leanGradients } from './lean-gradients.js';
import { fusedMatMulGradient } from './matmul-gradients.js';
import {
  checkTfjsVersion,
  engineInternals,
  installedTfjsVersions,
  wasmInternals,
  type BufferEntry,
  type BufferTable,
  type GradientsFn,
  type TfjsVersions,
} from './tfjs-internals.js';
import { WASM_KERNEL_REPLACEMENTS } from './wasm-kernels.js';

/**
 * Installs patches 1–4 (idempotent). Throws config_invalid, installing nothing, where tfjs is not
 * the release they were written for (`found`: the installed versions; tests pass others).
 */
export function installTfjsPatches(found: TfjsVersions = installedTfjsVersions()): void {
  checkTfjsVersion(found);
  registerGradients();
  installLeanGradients();
  installWasmKernelFixes();
}

// --- 4. gradients --------------------------------------------------------------------------------

let gradientsRegistered = false;

function registerGradients(): void {
  if (gradientsRegistered) return;
  gradientsRegistered = true;
  for (const config of [fusedMatMulGradient, geluGradient]) tf.registerGradient(config);
}

// --- 3. gradient engine --------------------------------------------------------------------------

let stockGradients: GradientsFn | null = null;

/** Puts the lean back-propagation in place of the engine's own (idempotent). */
export function installLeanGradients(): void {
  if (stockGradients !== null) return;
  checkTfjsVersion();
  const engine = engineInternals();
  stockGradients = engine.gradients.bind(engine);
  engine.gradients = leanGradients(engine, stockGradients);
}

/** Restores the stock back-propagation (tests and A/B measurements). */
export function uninstallLeanGradients(): void {
  if (stockGradients === null) return;
  // The stock method lives on the prototype: removing the own property restores it.
  delete (engineInternals() as Partial<{ gradients: GradientsFn }>).gradients;
  stockGradients = null;
}

export function leanGradientsInstalled(): boolean {
  return stockGradients !== null;
}

// --- 1 and 2. wasm kernels -----------------------------------------------------------------------

const GELU_KERNELS: ReadonlyArray<readonly [string, tf.KernelFunc]> = [
  [GELU_KERNEL, geluKernel],
  [GELU_GRAD_KERNEL, geluGradKernel],
];

/** The stock kernels replaced, to call as fallback and to put back. */
const stockKernels = new Map<string, tf.KernelConfig>();

/** Replaces the wasm Slice, SplitV, GatherV2, Identity and BatchMatMul kernels and adds the GELU ones (idempotent). */
export function installWasmKernelFixes(): void {
  if (stockKernels.size > 0) return;
  checkTfjsVersion();
  for (const [kernelName, kernelFunc] of GELU_KERNELS) {
    if (tf.getKernel(kernelName, 'wasm') === undefined) tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc });
  }
  for (const [name, replacement] of WASM_KERNEL_REPLACEMENTS) {
    const config = tf.getKernel(name, 'wasm');
    if (config === undefined) continue;
    stockKernels.set(name, config);
    tf.unregisterKernel(name, 'wasm');
    tf.registerKernel({ ...config, kernelFunc: (args) => replacement(args, config.kernelFunc) });
  }
}

/** Puts the stock kernels back and removes the GELU ones (tests and A/B measurements). */
export function uninstallWasmKernelFixes(): void {
  for (const [kernelName] of GELU_KERNELS) {
    if (tf.getKernel(kernelName, 'wasm') !== undefined) tf.unregisterKernel(kernelName, 'wasm');
  }
  for (const [name, config] of stockKernels) {
    tf.unregisterKernel(name, 'wasm');
    tf.registerKernel(config);
  }
  stockKernels.clear();
}

export function wasmKernelFixesInstalled(): boolean {
  return stockKernels.size > 0;
}

// --- 5. memory probe hook ------------------------------------------------------------------------

/** Told of every buffer the wasm backend records (set, with the entry it replaces) or forgets (delete). */
export interface BufferWatcher {
  set(entry: BufferEntry, replaced: BufferEntry | undefined): void;
  delete(entry: BufferEntry): void;
}

const watchers = new Set<BufferWatcher>();
let watched: { table: BufferTable; own: Array<[key: 'set' | 'delete', PropertyDescriptor | undefined]> } | null = null;

/**
 * Calls `watcher` for every change to the current wasm backend's buffer table until the returned
 * function is called; the table is patched only while at least one watcher is registered, and
 * restored exactly (own properties and all) when the last one leaves. Null off wasm.
 */
export function watchWasmBuffers(watcher: BufferWatcher): (() => void) | null {
  if (tf.getBackend() !== 'wasm') return null;
  const table = wasmInternals(tf.backend()).dataIdMap as BufferTable | undefined;
  if (table === undefined) return null;
  if (watched !== null && watched.table !== table) return null; // a second backend instance while one is watched
  if (watched === null) {
    watched = { table, own: (['set', 'delete'] as const).map((k) => [k, Object.getOwnPropertyDescriptor(table, k)]) };
    const set = table.set.bind(table);
    const del = table.delete.bind(table);
    table.set = (dataId, entry) => {
      const replaced = table.has(dataId) ? table.get(dataId) : undefined;
      for (const w of watchers) w.set(entry, replaced);
      set(dataId, entry);
    };
    table.delete = (dataId) => {
      const old = table.get(dataId);
      if (old) for (const w of watchers) w.delete(old);
      return del(dataId);
    };
  }
  watchers.add(watcher);
  return () => {
    if (!watchers.delete(watcher) || watchers.size > 0 || watched === null) return;
    for (const [key, descriptor] of watched.own) {
      if (descriptor) Object.defineProperty(watched.table, key, descriptor);
      else delete (watched.table as Partial<BufferTable>)[key];
    }
    watched = null;
  };
}
