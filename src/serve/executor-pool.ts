/**
 * The serving engine's executors, as one: routes each batch to an idle executor (executor-policy.ts
 * decides which), broadcasts preloads and evictions to every executor, and sums their stats.
 *
 * The batcher runs at most `size` batches at once, so an idle executor is always there when it
 * calls `run`. An executor that fails (a thread that died) rejects only its own batch; whether it
 * comes back is the executor's business (the thread handle restarts its thread).
 */
import { AppError } from '../errors.js';
import type { AdapterRef } from './adapter-loader.js';
import type { BatchRun, EngineRequest } from './engine-types.js';
import { sumExecutorStats, type ExecutorStats, type PreloadResult, type ServeExecutor } from './executor.js';
import { pickExecutor } from './executor-policy.js';
import type { BatchEntry } from './types.js';

export interface ExecutorPoolStats extends Omit<ExecutorStats, 'ready'> {
  /** Executors, those computing a batch now, and those ready (not starting or restarting). */
  count: number;
  busy: number;
  ready: number;
  /** Batches each executor ran (in executor order). */
  batchesByExecutor: number[];
}

interface Slot {
  readonly executor: ServeExecutor;
  busy: boolean;
  idleSince: number;
  batches: number;
}

export class ExecutorPool {
  private readonly slots: Slot[];
  /** A counter, not a clock: the order in which executors went idle is all the policy needs. */
  private ticks = 0;

  constructor(executors: readonly ServeExecutor[]) {
    if (executors.length === 0) throw new AppError('config_invalid', 'the serving engine needs at least one executor');
    this.slots = executors.map((executor) => ({ executor, busy: false, idleSince: 0, batches: 0 }));
  }

  get size(): number {
    return this.slots.length;
  }

  async run(batch: readonly BatchEntry<EngineRequest>[]): Promise<BatchRun> {
    const keys = new Set<string>();
    for (const entry of batch) for (const item of entry.request.items) for (const k of item.adapterKeys) keys.add(k);
    const views = this.slots.map((s) => ({
      busy: s.busy,
      ready: s.executor.stats().ready,
      idleSince: s.idleSince,
      isResident: (k: string) => s.executor.isResident(k),
    }));
    const i = pickExecutor(views, [...keys]);
    if (i === undefined) throw new AppError('internal', 'no idle serving executor (more batches in flight than executors)');
    const slot = this.slots[i];
    slot.busy = true;
    slot.batches += 1;
    try {
      return await slot.executor.run(batch);
    } finally {
      slot.busy = false;
      slot.idleSince = ++this.ticks;
    }
  }

  /** Every executor loads them (a batch may go to any); a key failed if it failed anywhere. */
  async preload(refs: readonly AdapterRef[], pin: boolean): Promise<PreloadResult[]> {
    const all = await Promise.all(
      this.slots.map((s) =>
        s.executor.preload(refs, pin).catch((err: unknown) => refs.map((r) => ({ key: r.key, error: err as Error }))),
      ),
    );
    return refs.map((ref, k) => {
      const failed = all.find((results) => results[k]?.error !== undefined);
      return failed === undefined ? { key: ref.key } : { key: ref.key, error: failed[k].error };
    });
  }

  /** How many of the versions were resident or loading in at least one executor. */
  evict(keys: Iterable<string>): number {
    let found = 0;
    for (const key of keys) {
      let any = false;
      for (const s of this.slots) if (s.executor.evict([key]) > 0) any = true;
      if (any) found += 1;
    }
    return found;
  }

  isResident(key: string): boolean {
    return this.slots.some((s) => s.executor.isResident(key));
  }

  stats(): ExecutorPoolStats {
    const all = this.slots.map((s) => s.executor.stats());
    return {
      ...sumExecutorStats(all),
      count: this.slots.length,
      busy: this.slots.filter((s) => s.busy).length,
      ready: all.filter((s) => s.ready).length,
      batchesByExecutor: this.slots.map((s) => s.batches),
    };
  }

  async ready(): Promise<void> {
    await Promise.all(this.slots.map((s) => s.executor.ready()));
  }

  async close(): Promise<void> {
    await Promise.all(this.slots.map((s) => s.executor.close()));
  }
}
