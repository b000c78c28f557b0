/**
 * Per-tenant limits. Rate: a token bucket per tenant in this process (RATE_LIMIT_RPS refill,
 * RATE_LIMIT_BURST size); several replicas each allow that rate — the limit protects a process,
 * it is not a billing meter. Concurrency: uploads in progress per tenant (UPLOADS_PER_TENANT),
 * also per process. Quotas: counts and bytes a tenant holds, read from the database at
 * the moment something new would be stored, so they hold across replicas.
 */
import * as tenantsRepo from '../db/repos/tenants.js';
import type { Config } from '../config.js';
import { AppError } from '../errors.js';
import type { ServiceDeps, TenantCtx } from './context.js';

export type LimitsConfig = Pick<Config, 'RATE_LIMIT_RPS' | 'RATE_LIMIT_BURST' | 'QUOTA_ADAPTERS' | 'QUOTA_DATASETS' | 'QUOTA_BYTES'>;

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly ratePerSecond: number,
    private readonly burst: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Take `cost` tokens for the tenant, or throw 'rate_limited' with the seconds until they refill. */
  take(tenantId: string, cost = 1): void {
    const now = this.now();
    const b = this.buckets.get(tenantId) ?? { tokens: this.burst, at: now };
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.ratePerSecond);
    b.at = now;
    // Refresh insertion order so the oldest idle buckets are the first to go.
    this.buckets.delete(tenantId);
    this.buckets.set(tenantId, b);
    if (b.tokens < cost) {
      const wait = Math.max(1, Math.ceil((cost - b.tokens) / this.ratePerSecond));
      throw new AppError('rate_limited', `rate limit exceeded (${this.ratePerSecond} requests/s, burst ${this.burst})`, {
        retryAfterSeconds: wait,
      });
    }
    b.tokens -= cost;
    if (this.buckets.size > 100_000) this.sweep(now);
  }

  /** Full buckets carry no state; forget them to bound memory. */
  private sweep(now: number): void {
    for (const [id, b] of this.buckets) {
      if (b.tokens + ((now - b.at) / 1000) * this.ratePerSecond >= this.burst) this.buckets.delete(id);
    }
  }
}

/**
 * How many of one kind of long request (data set uploads) a tenant may have in progress at once
 * in this process; like the rate limit, per process.
 */
export class ConcurrencyLimiter {
  private readonly held = new Map<string, number>();

  constructor(
    private readonly perTenant: number,
    private readonly what: string,
    private readonly retryAfterSeconds = 2,
  ) {}

  /** Takes a slot for the tenant, or throws 'rate_limited'. Call the returned function to give it back (once is enough; more is harmless). */
  acquire(tenantId: string): () => void {
    const n = this.held.get(tenantId) ?? 0;
    if (n >= this.perTenant) {
      throw new AppError('rate_limited', `at most ${this.perTenant} ${this.what} in progress per tenant; retry when one finished`, {
        retryAfterSeconds: this.retryAfterSeconds,
        details: { limit: this.perTenant },
      });
    }
    this.held.set(tenantId, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.held.get(tenantId) ?? 1) - 1;
      if (left > 0) this.held.set(tenantId, left);
      else this.held.delete(tenantId);
    };
  }

  /** Slots the tenant holds now. */
  inUse(tenantId: string): number {
    return this.held.get(tenantId) ?? 0;
  }
}

export type QuotaKind = 'datasets' | 'adapters';

/** Throws 'quota_exceeded' when the tenant may not add one more `kind` of object. */
export async function checkCountQuota(deps: Pick<ServiceDeps, 'database'>, limits: LimitsConfig, ctx: TenantCtx, kind: QuotaKind): Promise<void> {
  const usage = await tenantsRepo.usage(deps.database.db, ctx.tenantId);
  const limit = kind === 'datasets' ? limits.QUOTA_DATASETS : limits.QUOTA_ADAPTERS;
  if (usage[kind] >= limit) {
    throw new AppError('quota_exceeded', `quota reached: at most ${limit} ${kind} per tenant`, {
      details: { kind, limit, used: usage[kind] },
    });
  }
}

/** Bytes the tenant may still store (never negative). */
export async function remainingBytes(deps: Pick<ServiceDeps, 'database'>, limits: LimitsConfig, ctx: TenantCtx): Promise<number> {
  const usage = await tenantsRepo.usage(deps.database.db, ctx.tenantId);
  return Math.max(0, limits.QUOTA_BYTES - usage.bytes);
}

/** Throws 'quota_exceeded' when `bytes` more would pass the tenant's storage quota. */
export async function checkByteQuota(deps: Pick<ServiceDeps, 'database'>, limits: LimitsConfig, ctx: TenantCtx, bytes: number): Promise<void> {
  const left = await remainingBytes(deps, limits, ctx);
  if (bytes > left) {
    throw new AppError('quota_exceeded', `storage quota reached: ${limits.QUOTA_BYTES} bytes per tenant`, {
      details: { kind: 'bytes', limit: limits.QUOTA_BYTES, remaining: left, requested: bytes },
    });
  }
}
