/**
 * The serving prefix-activation cache (optional; PREFIX_CACHE_BYTES = 0 turns it off).
 *
 * The shared prefix (blocks before the first adapter addition) does not depend on any tenant, so
 * its activations for an image can be reused by every later request for the same image: repeat
 * images, fan-out across calls, the same image sent by several tenants. Entries are keyed by the
 * backbone identity + the image's content hash; each records the split it was computed at and
 * serves any split up to it (blocks before the first addition carry no adapter term, so the input
 * of block s of a longer prefix IS the output of a prefix cut at s).
 *
 * Values live in plain Float32Arrays outside the wasm heap (which never shrinks and tops out near
 * 4 GiB), under a byte budget with LRU eviction. Purely synchronous. Owned by the serving engine;
 * the batch executor reads and fills it within a batch. Keyed by image, not by adapter or tenant,
 * so an adapter or tenant delete has nothing to evict here.
 *
 * Not the training side's `TrainingPrefixStore` (train/prefix-store.ts): one run's rows, per job.
 */

/** One image's prefix activations, [tokens × width] per tensor (its block's: a Swin's stages differ), row-major. */
export interface PrefixRows {
  /** How many blocks the prefix ran: inputs[i] is the input of block i, for i < split. */
  readonly split: number;
  readonly inputs: readonly Float32Array[];
  /** Output of block split−1 (x_0 when split = 0). */
  readonly x: Float32Array;
}

export interface PrefixActivationCacheStats {
  hits: number;
  misses: number;
  insertions: number;
  evictions: number;
  entries: number;
  bytes: number;
  budgetBytes: number;
}

interface Entry {
  readonly rows: PrefixRows;
  readonly bytes: number;
}

/** Map keys and object headers, counted so the budget is not only the float payload. */
const ENTRY_OVERHEAD_BYTES = 256;

export class PrefixActivationCache {
  private readonly entries = new Map<string, Entry>(); // insertion order = LRU order
  private bytes = 0;
  private readonly counters = { hits: 0, misses: 0, insertions: 0, evictions: 0 };

  constructor(
    private readonly options: {
      readonly budgetBytes: number;
      /** Identity of the backbone the activations come from (part of every key). */
      readonly backboneId: string;
      /**
       * Whether block `split`'s input is block split−1's output, so that an entry computed further
       * can serve `split` (false where a Swin's patch merging sits between them). Default: always.
       */
      readonly cuttableAt?: (split: number) => boolean;
    },
  ) {}

  get enabled(): boolean {
    return this.options.budgetBytes > 0;
  }

  /**
   * The activations of image `hash` for a prefix of `split` blocks, or undefined. A hit may come
   * from an entry computed at a longer split; the returned rows then have exactly `split` inputs.
   */
  get(hash: string, split: number): PrefixRows | undefined {
    if (!this.enabled) return undefined;
    const key = this.key(hash);
    const entry = this.entries.get(key);
    if (entry === undefined || entry.rows.split < split || (entry.rows.split > split && this.options.cuttableAt?.(split) === false)) {
      this.counters.misses += 1;
      return undefined;
    }
    this.counters.hits += 1;
    this.entries.delete(key);
    this.entries.set(key, entry);
    const { rows } = entry;
    if (rows.split === split) return rows;
    return { split, inputs: rows.inputs.slice(0, split), x: rows.inputs[split] };
  }

  /** Store (or widen) the activations of image `hash`. An entry over the whole budget is not kept. */
  put(hash: string, rows: PrefixRows): void {
    if (!this.enabled) return;
    const key = this.key(hash);
    const old = this.entries.get(key);
    if (old !== undefined && old.rows.split >= rows.split) return;
    const bytes = rows.inputs.reduce((sum, a) => sum + a.byteLength, rows.x.byteLength) + ENTRY_OVERHEAD_BYTES;
    if (bytes > this.options.budgetBytes) return;
    if (old !== undefined) this.drop(key, old, false);
    this.entries.set(key, { rows, bytes });
    this.bytes += bytes;
    this.counters.insertions += 1;
    for (const [k, e] of this.entries) {
      if (this.bytes <= this.options.budgetBytes) break;
      this.drop(k, e, true);
    }
  }

  clear(): void {
    this.entries.clear();
    this.bytes = 0;
  }

  stats(): PrefixActivationCacheStats {
    return { ...this.counters, entries: this.entries.size, bytes: this.bytes, budgetBytes: this.options.budgetBytes };
  }

  private key(hash: string): string {
    return `${this.options.backboneId}:${hash}`;
  }

  private drop(key: string, entry: Entry, eviction: boolean): void {
    this.entries.delete(key);
    this.bytes -= entry.bytes;
    if (eviction) this.counters.evictions += 1;
  }
}
