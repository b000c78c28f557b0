/**
 * Which immutable adapter version a classify request names: (tenant, adapter id or name,
 * version number or alias) → adapter + version rows.
 *
 * Every classify needs this, and on embedded PGlite the lookup is a large part of what HTTP adds
 * to a small model's answer. Where the database says this process is its only writer
 * (`writeGeneration`), answers are remembered until any write happens, so a new version, a moved
 * alias or a deletion is still seen by the very next request. With PostgreSQL (other processes
 * write) every call goes to the database.
 */
import * as adaptersRepo from '../db/repos/adapters.js';
import type { Adapter, AdapterVersion } from '../db/schema.js';
import type { ServiceDeps } from './context.js';

export interface ResolvedVersion {
  adapter: Adapter;
  version: AdapterVersion;
}

/**
 * Version numbers are int4 columns: a larger number names no version and must never reach a
 * query (the database would fail on it, a 500). Every schema that takes a version bounds it here.
 */
export const MAX_VERSION = 2_147_483_647;

export interface VersionSelector {
  adapter: string;
  version?: number | string;
  alias?: string;
}

const DEFAULT_MAX_ENTRIES = 10_000;

export class VersionResolver {
  private readonly entries = new Map<string, ResolvedVersion>();
  /** The write generation the entries were read at. */
  private generation = -1;
  private hits = 0;
  private misses = 0;

  constructor(
    private readonly deps: Pick<ServiceDeps, 'database'>,
    private readonly maxEntries = DEFAULT_MAX_ENTRIES,
  ) {}

  async resolve(tenantId: string, sel: VersionSelector): Promise<ResolvedVersion> {
    const versionRef = sel.version ?? sel.alias ?? adaptersRepo.LATEST;
    const current = this.deps.database.writeGeneration;
    if (current === undefined) return adaptersRepo.resolve(this.deps.database.db, tenantId, sel.adapter, versionRef);

    const before = current();
    if (before !== this.generation) {
      this.entries.clear();
      this.generation = before;
    }
    const key = `${tenantId}\u0000${sel.adapter}\u0000${typeof versionRef}:${String(versionRef)}`;
    const known = this.entries.get(key);
    if (known !== undefined) {
      this.hits++;
      return known;
    }
    this.misses++;
    const found = await adaptersRepo.resolve(this.deps.database.db, tenantId, sel.adapter, versionRef);
    // A write issued while the lookup ran may or may not be in what it read: keep nothing then.
    if (current() === before && this.generation === before) {
      if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
      this.entries.set(key, found);
    }
    return found;
  }

  stats(): { hits: number; misses: number; entries: number } {
    return { hits: this.hits, misses: this.misses, entries: this.entries.size };
  }
}
