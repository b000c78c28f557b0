/**
 * Starting a compute thread. Node 20 does not apply the parent's `--import tsx` to a worker's
 * modules, so every thread starts at shim.mjs, which registers tsx and then imports the
 * TypeScript entry: the entry reads its own data as `workerData.data`.
 */
import { Worker, type WorkerOptions } from 'node:worker_threads';

const SHIM = new URL('./shim.mjs', import.meta.url);

export interface ThreadData<T> {
  /** The entry module's URL (shim.mjs imports it). */
  entry: string;
  data: T;
}

/** A worker thread running the TypeScript module `entry` with `data` as `workerData.data`. */
export function spawnThread<T>(entry: URL, data: T, options: Omit<WorkerOptions, 'workerData' | 'eval'> = {}): Worker {
  const workerData: ThreadData<T> = { entry: entry.href, data };
  return new Worker(SHIM, { ...options, workerData });
}
