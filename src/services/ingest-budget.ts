/**
 * What one tenant may have inflating and decoding at once in this process: bytes (declared
 * uncompressed sizes) and entries, summed over the tenant's uploads in progress. One upload is
 * bounded by the ingest limits (entry count, total, archive ratio); this bounds a tenant's
 * concurrent uploads, so three legal-but-large uploads cannot take every core from other tenants.
 *
 * A reservation is taken after the zip's central directory is read and before anything is
 * inflated, and released in the upload's `finally`. Per process, as the rate limiter is: with N
 * replicas a tenant may have N budgets in use.
 */
import { AppError } from '../errors.js';
import type { IngestNeed } from '../train/ingest/index.js';
import type { ServiceDeps } from './context.js';

export interface IngestBudgetLimits {
  /** Declared uncompressed bytes a tenant may have in uploads being read at once. */
  bytes: number;
  /** Zip entries (or JSONL lines) a tenant may have in uploads being read at once. */
  entries: number;
}

export interface IngestReservation {
  /** Gives the reservation back; a second call does nothing. */
  release(): void;
}

interface InUse {
  bytes: number;
  entries: number;
  uploads: number;
}

export class IngestBudget {
  private readonly inUse = new Map<string, InUse>();

  constructor(private readonly limits: IngestBudgetLimits) {}

  /** Reserves `need` for the tenant, or refuses with 413 'payload_too_large' naming the budget. */
  reserve(tenantId: string, need: IngestNeed): IngestReservation {
    const used = this.inUse.get(tenantId) ?? { bytes: 0, entries: 0, uploads: 0 };
    const over =
      used.bytes + need.inflatedBytes > this.limits.bytes ? 'bytes' : used.entries + need.entries > this.limits.entries ? 'entries' : undefined;
    if (over !== undefined) {
      const [limit, inUse, requested] =
        over === 'bytes' ? [this.limits.bytes, used.bytes, need.inflatedBytes] : [this.limits.entries, used.entries, need.entries];
      const others = used.uploads > 0 ? ` with ${used.uploads} other upload${used.uploads === 1 ? '' : 's'} of this tenant in progress (${inUse} in use)` : '';
      throw new AppError(
        'payload_too_large',
        `the upload needs ${requested} ${over === 'bytes' ? 'uncompressed bytes' : 'entries'}; ` +
          `a tenant may have ${limit} being read at once${others}. Retry when they finish, or upload less at once`,
        { details: { kind: over === 'bytes' ? 'tenant_ingest_bytes' : 'tenant_ingest_entries', limit, inUse, requested } },
      );
    }
    this.inUse.set(tenantId, { bytes: used.bytes + need.inflatedBytes, entries: used.entries + need.entries, uploads: used.uploads + 1 });
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        const now = this.inUse.get(tenantId)!;
        const left = { bytes: now.bytes - need.inflatedBytes, entries: now.entries - need.entries, uploads: now.uploads - 1 };
        if (left.uploads === 0) this.inUse.delete(tenantId);
        else this.inUse.set(tenantId, left);
      },
    };
  }

  /** What the tenant has reserved now (zeros when nothing). */
  usage(tenantId: string): InUse {
    return { ...(this.inUse.get(tenantId) ?? { bytes: 0, entries: 0, uploads: 0 }) };
  }
}

// One budget per database handle, which is one per process: every request of a process shares it
// without each composition root (server, CLI, tests) having to build and pass one.
const budgets = new WeakMap<object, IngestBudget>();

export function ingestBudgetFor(deps: Pick<ServiceDeps, 'database' | 'config'>): IngestBudget {
  let budget = budgets.get(deps.database);
  if (budget === undefined) {
    budget = new IngestBudget({ bytes: deps.config.INGEST_TENANT_BYTES, entries: deps.config.INGEST_TENANT_ENTRIES });
    budgets.set(deps.database, budget);
  }
  return budget;
}
