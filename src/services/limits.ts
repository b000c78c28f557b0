/**
 * Per-tenant limits. Rate: a token bucket per tenant in this process (RATE_LIMIT_RPS refill,
 * RATE_LIMIT_BURST size); several replicas each allow that rate — the limit protects a process,
 * it is not a billing meter. Quotas: counts and bytes a tenant holds, read from the database at
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
