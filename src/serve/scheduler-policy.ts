/**
 * The cross-tenant batching policy: which queued classify requests form the next micro-batch.
 *
 * Deterministic and I/O-free: no clock (callers pass `now`), no timers, no promises. The functions
 * mutate only the `SchedulerState` they are given, so the batcher (the one owner of that state) can
 * stay a thin shell and the policy can be property-tested by driving it directly.
 *
 * Fairness: tenants are served round-robin from a rotating start, one request per tenant per round,
 * so a tenant with a deep queue gets no more than one request per round while others wait. A tenant
 * whose head request did not fit the batch starts the next batch, and tenants that become active
 * join the rotation last; together these bound how long any waiting tenant goes unserved (at most
 * as many batches as there were active tenants when it joined).
 */
import { AppError } from '../errors.js';
import type { Queued } from './types.js';

/** The minimum a request must expose to be scheduled. */
export interface Schedulable {
  readonly tenantId: string;
  readonly deadline: number;
  readonly items: readonly unknown[];
}

export interface SchedulerState<Req> {
  /** Per-tenant FIFO queues; only tenants with at least one queued request have an entry. */
  readonly queues: Map<string, Queued<Req>[]>;
  /** Active tenants in service order; `cursor` is the one that goes first in the next batch. */
  readonly ring: string[];
  cursor: number;
  /** Queued requests and their summed cost, kept in step with `queues`. */
  total: number;
  totalCost: number;
  nextSeq: number;
}

export interface QueueLimits {
  /** Requests queued across all tenants (QUEUE_MAX_TOTAL). */
  readonly maxTotal: number;
  /** Requests queued per tenant (QUEUE_MAX_PER_TENANT). */
  readonly maxPerTenant: number;
}

export interface EnqueueOptions<Req> extends QueueLimits {
  /** Retry-After hint attached to a queue_full rejection (seconds, ≥ 1). */
  readonly retryAfterSeconds?: number;
  /** What a request counts toward maxBatchSize; default its number of images (items). */
  readonly costOf?: (request: Req) => number;
}

export interface BatchOptions {
  /** Most cost units (images by default) in one batch; a single larger request still runs alone. */
  readonly maxBatchSize: number;
  /** A batch is formed once the oldest queued request has waited this long, even if not full. */
  readonly maxWaitMs: number;
  /** Form a batch now from whatever is queued (used while draining). */
  readonly flush?: boolean;
}

export type Admission<Req> = { readonly ok: true; readonly queued: Queued<Req> } | { readonly ok: false; readonly error: AppError };

/** `expired` requests were removed because their deadline passed; the caller fails them. */
export type Decision<Req> =
  | { readonly kind: 'batch'; readonly batch: Queued<Req>[]; readonly expired: Queued<Req>[] }
  | { readonly kind: 'wait'; readonly until: number; readonly expired: Queued<Req>[] }
  | { readonly kind: 'idle'; readonly expired: Queued<Req>[] };

export function createSchedulerState<Req>(): SchedulerState<Req> {
  return { queues: new Map(), ring: [], cursor: 0, total: 0, totalCost: 0, nextSeq: 0 };
}

const defaultCost = (request: Schedulable): number => request.items.length;

/** Admit a request or say why not (typed, never throws for bad input). */
export function enqueue<Req extends Schedulable>(
  state: SchedulerState<Req>,
  request: Req,
  now: number,
  options: EnqueueOptions<Req>,
): Admission<Req> {
  const cost = (options.costOf ?? defaultCost)(request);
  if (request.items.length === 0) return reject('validation_failed', 'a classify request needs at least one image');
  if (!Number.isInteger(cost) || cost < 1) return reject('validation_failed', `request cost must be a positive integer, got ${cost}`);
  if (typeof request.tenantId !== 'string' || request.tenantId === '') return reject('validation_failed', 'tenantId is required');
  if (!Number.isFinite(request.deadline)) return reject('validation_failed', 'deadline must be a finite time');
  if (request.deadline <= now) return reject('deadline_exceeded', 'request deadline passed before it was queued');

  const retryAfterSeconds = Math.max(1, Math.ceil(options.retryAfterSeconds ?? 1));
  const queue = state.queues.get(request.tenantId);
  if (state.total >= options.maxTotal) {
    return reject('queue_full', 'the classify queue is full', { retryAfterSeconds, details: { scope: 'total', limit: options.maxTotal } });
  }
  if ((queue?.length ?? 0) >= options.maxPerTenant) {
    return reject('queue_full', 'this tenant has too many classify requests queued', {
      retryAfterSeconds,
      details: { scope: 'tenant', limit: options.maxPerTenant },
    });
  }

  const queued: Queued<Req> = {
    seq: state.nextSeq++,
    tenantId: request.tenantId,
    cost,
    enqueuedAt: now,
    deadline: request.deadline,
    request,
  };
  if (queue === undefined) {
    state.queues.set(request.tenantId, [queued]);
    joinRing(state, request.tenantId);
  } else {
    queue.push(queued);
  }
  state.total += 1;
  state.totalCost += cost;
  return { ok: true, queued };
}

/**
 * Decide what to do at time `now`: run a batch, wait until a given time, or sleep until the next
 * enqueue. Expired requests are removed first in every case.
 */
export function nextBatch<Req>(state: SchedulerState<Req>, now: number, options: BatchOptions): Decision<Req> {
  const expired = removeExpired(state, now);
  if (state.total === 0) return { kind: 'idle', expired };

  let oldest = Infinity;
  let earliestDeadline = Infinity;
  for (const queue of state.queues.values()) {
    oldest = Math.min(oldest, queue[0].enqueuedAt);
    for (const q of queue) earliestDeadline = Math.min(earliestDeadline, q.deadline);
  }
  const ready = options.flush === true || state.totalCost >= options.maxBatchSize || now >= oldest + options.maxWaitMs;
  if (!ready) return { kind: 'wait', until: Math.min(oldest + options.maxWaitMs, earliestDeadline), expired };
  return { kind: 'batch', batch: formBatch(state, options.maxBatchSize), expired };
}

/** Remove and return every queued request (used when the owner shuts down without serving). */
export function takeAll<Req>(state: SchedulerState<Req>): Queued<Req>[] {
  const all = [...state.queues.values()].flat().sort((a, b) => a.seq - b.seq);
  state.queues.clear();
  state.ring.length = 0;
  state.cursor = 0;
  state.total = 0;
  state.totalCost = 0;
  return all;
}

/** Queued requests per tenant (only tenants with something queued). */
export function tenantDepths<Req>(state: SchedulerState<Req>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [tenant, queue] of state.queues) out[tenant] = queue.length;
  return out;
}

function formBatch<Req>(state: SchedulerState<Req>, maxBatchSize: number): Queued<Req>[] {
  const order = [...state.ring.slice(state.cursor), ...state.ring.slice(0, state.cursor)];
  const taken = new Map<string, number>();
  const blocked = new Set<string>();
  const batch: Queued<Req>[] = [];
  let used = 0;
  let firstBlocked: string | undefined;
  let lastServedPos = 0;

  let progress = true;
  while (progress && used < maxBatchSize) {
    progress = false;
    for (let pos = 0; pos < order.length && used < maxBatchSize; pos++) {
      const tenant = order[pos];
      if (blocked.has(tenant)) continue;
      const queue = state.queues.get(tenant)!;
      const n = taken.get(tenant) ?? 0;
      if (n >= queue.length) continue;
      const head = queue[n];
      // The first request always fits, so an oversized request runs alone rather than never.
      if (batch.length > 0 && used + head.cost > maxBatchSize) {
        // Per-tenant FIFO: a later, smaller request must not overtake this one.
        blocked.add(tenant);
        firstBlocked ??= tenant;
        continue;
      }
      batch.push(head);
      taken.set(tenant, n + 1);
      used += head.cost;
      lastServedPos = pos;
      progress = true;
    }
  }

  for (const [tenant, n] of taken) {
    const queue = state.queues.get(tenant)!;
    for (const q of queue.splice(0, n)) {
      state.total -= 1;
      state.totalCost -= q.cost;
    }
  }
  // Next start: a tenant that was crowded out goes first; otherwise continue after the last served.
  let nextStart = firstBlocked;
  if (nextStart === undefined) {
    for (let step = 1; step <= order.length; step++) {
      const tenant = order[(lastServedPos + step) % order.length];
      if ((state.queues.get(tenant)?.length ?? 0) > 0) {
        nextStart = tenant;
        break;
      }
    }
  }
  for (const tenant of taken.keys()) if (state.queues.get(tenant)!.length === 0) leaveRing(state, tenant);
  state.cursor = nextStart === undefined ? 0 : state.ring.indexOf(nextStart);
  return batch;
}

function removeExpired<Req>(state: SchedulerState<Req>, now: number): Queued<Req>[] {
  const expired: Queued<Req>[] = [];
  for (const [tenant, queue] of [...state.queues]) {
    if (!queue.some((q) => q.deadline <= now)) continue;
    const keep: Queued<Req>[] = [];
    for (const q of queue) (q.deadline <= now ? expired : keep).push(q);
    if (keep.length === 0) {
      leaveRing(state, tenant);
    } else {
      state.queues.set(tenant, keep);
    }
  }
  for (const q of expired) {
    state.total -= 1;
    state.totalCost -= q.cost;
  }
  return expired.sort((a, b) => a.seq - b.seq);
}

/** A newly active tenant goes last in the current rotation, so it cannot jump ahead of waiting ones. */
function joinRing<Req>(state: SchedulerState<Req>, tenant: string): void {
  state.ring.splice(state.cursor, 0, tenant);
  state.cursor = (state.cursor + 1) % state.ring.length;
}

function leaveRing<Req>(state: SchedulerState<Req>, tenant: string): void {
  state.queues.delete(tenant);
  const i = state.ring.indexOf(tenant);
  if (i < 0) return;
  state.ring.splice(i, 1);
  if (i < state.cursor) state.cursor -= 1;
  if (state.cursor >= state.ring.length) state.cursor = 0;
}

function reject<Req>(
  code: 'validation_failed' | 'deadline_exceeded' | 'queue_full',
  message: string,
  options: { retryAfterSeconds?: number; details?: Record<string, unknown> } = {},
): Admission<Req> {
  return { ok: false, error: new AppError(code, message, options) };
}
