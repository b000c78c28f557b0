/**
 * API keys and the admin token: how a caller proves who it is.
 *
 * A tenant key looks like `dtl_<prefix>_<secret>`: the 12-hex-digit prefix is public (stored,
 * shown in listings, used to find the row), the 32-byte secret is shown once and only its sha256
 * is stored. A leaked database therefore yields no usable key, and a lookup costs one indexed
 * query plus one hash. The tenant a request acts for is the key's tenant, never request input.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import * as keysRepo from '../db/repos/keys.js';
import { AppError } from '../errors.js';
import type { ServiceDeps, TenantCtx } from './context.js';

export const SCOPES = ['classify', 'train', 'manage'] as const;
export const scopeSchema = z.enum(SCOPES);
export type Scope = z.infer<typeof scopeSchema>;

/** An authenticated tenant key. */
export interface Principal extends TenantCtx {
  keyId: string;
  keyPrefix: string;
  scopes: readonly Scope[];
}

export interface GeneratedKey {
  /** The whole key, shown to the caller once. */
  token: string;
  prefix: string;
  /** sha256 (hex) of the secret part: what is stored. */
  hash: string;
}

const TOKEN_RE = /^dtl_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

export function generateKey(): GeneratedKey {
  const prefix = randomBytes(6).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  return { token: `dtl_${prefix}_${secret}`, prefix, hash: hashSecret(secret) };
}

/** Splits a key into prefix and secret, or undefined when it cannot be one of ours. */
export function parseKey(token: string): { prefix: string; secret: string } | undefined {
  const m = TOKEN_RE.exec(token);
  return m === null ? undefined : { prefix: m[1], secret: m[2] };
}

function equalHex(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && x.length > 0 && timingSafeEqual(x, y);
}

/** The credential of an `Authorization: Bearer …` header (or undefined when there is none). */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m === null ? undefined : m[1];
}

const unauthenticated = (message = 'missing or invalid API key') => new AppError('unauthenticated', message);

/** Constant-time comparison of a presented token with a configured one; false when either is missing. */
export function sameToken(expected: string | undefined, token: string | undefined): boolean {
  if (expected === undefined || token === undefined) return false;
  const a = createHash('sha256').update(expected).digest();
  const b = createHash('sha256').update(token).digest();
  return timingSafeEqual(a, b);
}

/** Constant-time comparison with the configured admin token; false when none is configured. */
export function isAdminToken(config: { ADMIN_TOKEN?: string }, token: string | undefined): boolean {
  return sameToken(config.ADMIN_TOKEN, token);
}

/** How often at most last_used_at is written per key, by this process. */
const TOUCH_INTERVAL_MS = 60_000;
/** Verified keys remembered at most; beyond it the oldest entry goes. */
const CACHE_MAX_KEYS = 10_000;

interface CachedKey {
  hash: string;
  principal: Omit<Principal, 'requestId'>;
  expiresAt: number;
}

/**
 * Verifies tenant keys. A verified key is remembered for `ttlMs` so a busy key costs one database
 * lookup per TTL rather than one per request; the secret is still hashed and compared every time.
 * Only successes are remembered, so a new key works at once and a wrong secret never does.
 * Revoking a key or deleting a tenant through this process calls `forgetKey`/`forgetTenant`.
 */
export class Authenticator {
  private readonly touched = new Map<string, number>();
  private readonly verified = new Map<string, CachedKey>();
  private readonly ttlMs: number;
  private readonly now: () => number;
  private hits = 0;
  private misses = 0;

  constructor(
    private readonly deps: Pick<ServiceDeps, 'database' | 'log'>,
    options: { ttlMs?: number; now?: () => number } = {},
  ) {
    this.ttlMs = options.ttlMs ?? 0;
    this.now = options.now ?? Date.now;
  }

  /**
   * The principal of a tenant key, or AppError 'unauthenticated' (missing, malformed, unknown,
   * revoked, or the tenant is deleted — all alike, so a caller learns nothing from the difference).
   */
  async authenticate(token: string | undefined, requestId?: string): Promise<Principal> {
    if (token === undefined) throw unauthenticated();
    const parsed = parseKey(token);
    if (parsed === undefined) throw unauthenticated();
    const hash = hashSecret(parsed.secret);
    const cached = this.verified.get(parsed.prefix);
    if (cached !== undefined && cached.expiresAt > this.now()) {
      if (!equalHex(cached.hash, hash)) throw unauthenticated();
      this.hits++;
      this.touch(cached.principal.keyId);
      return { ...cached.principal, requestId };
    }
    this.verified.delete(parsed.prefix);
    this.misses++;
    const found = await keysRepo.findActiveByPrefix(this.deps.database.db, parsed.prefix);
    if (found === undefined || !equalHex(found.key.hash, hash)) throw unauthenticated();
    this.touch(found.key.id);
    const scopes = found.key.scopes.filter((s): s is Scope => (SCOPES as readonly string[]).includes(s));
    const principal = { tenantId: found.tenant.id, keyId: found.key.id, keyPrefix: found.key.prefix, scopes };
    this.remember(parsed.prefix, found.key.hash, principal);
    return { ...principal, requestId };
  }

  /** Verifications answered from memory (hits) and from the database (misses). */
  stats(): { hits: number; misses: number } {
    return { hits: this.hits, misses: this.misses };
  }

  /** The key is revoked: the next request with it goes to the database (and is refused). */
  forgetKey(keyId: string): void {
    for (const [prefix, entry] of this.verified) if (entry.principal.keyId === keyId) this.verified.delete(prefix);
  }

  /** The tenant is deleted: none of its keys is trusted from memory any more. */
  forgetTenant(tenantId: string): void {
    for (const [prefix, entry] of this.verified) if (entry.principal.tenantId === tenantId) this.verified.delete(prefix);
  }

  private remember(prefix: string, hash: string, principal: CachedKey['principal']): void {
    if (this.ttlMs <= 0) return;
    if (this.verified.size >= CACHE_MAX_KEYS) this.verified.delete(this.verified.keys().next().value!);
    this.verified.set(prefix, { hash, principal, expiresAt: this.now() + this.ttlMs });
  }

  /** Records use without delaying the request; a failed write only costs a stale timestamp. */
  private touch(keyId: string): void {
    const now = Date.now();
    const last = this.touched.get(keyId);
    if (last !== undefined && now - last < TOUCH_INTERVAL_MS) return;
    this.touched.set(keyId, now);
    if (this.touched.size > 10_000) this.touched.clear();
    keysRepo.touch(this.deps.database.db, keyId, TOUCH_INTERVAL_MS).catch((err: unknown) => {
      this.deps.log.warn({ err, keyId }, 'could not record API key use');
    });
  }
}

/** What the key and tenant verbs tell the authenticator so a revocation applies at once. */
export type KeyRevocations = Pick<Authenticator, 'forgetKey' | 'forgetTenant'>;

/** Throws 'forbidden' unless the principal holds one of `anyOf`. */
export function requireScope(principal: Principal, anyOf: readonly Scope[]): void {
  if (anyOf.length === 0 || anyOf.some((s) => principal.scopes.includes(s))) return;
  throw new AppError('forbidden', `this API key lacks the scope this needs (${anyOf.join(' or ')})`, {
    details: { required: anyOf, granted: principal.scopes },
  });
}
