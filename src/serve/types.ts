/**
 * Shapes shared by the serving scheduler, batcher and (later) the engine. The payload of an image is
 * a type parameter so this layer stays tensor-free: the engine decides whether it is an image key,
 * decoded pixels or a content hash.
 */

/** One image of a classify request, answered by one or more adapters (fan-out). */
export interface ServeItem<P> {
  readonly payload: P;
  /**
   * Immutable adapter-version ids (never aliases): the service resolves alias → version before
   * submitting, so a newly published version is seen by the next request, not by queued ones.
   */
  readonly adapterKeys: readonly string[];
}

/** One classify call from one tenant. */
export interface ServeRequest<P> {
  readonly tenantId: string;
  readonly items: readonly ServeItem<P>[];
  /** Absolute time (same clock as the batcher's `now`, epoch ms by default) after which the request is failed. */
  readonly deadline: number;
}

/** A request as the scheduler holds it: the caller's request plus the bookkeeping the policy needs. */
export interface Queued<Req> {
  /** Admission order, unique per scheduler state; used for FIFO and as a stable identity. */
  readonly seq: number;
  readonly tenantId: string;
  /** What the request counts toward the batch size (default: its number of images). */
  readonly cost: number;
  readonly enqueuedAt: number;
  readonly deadline: number;
  readonly request: Req;
}

/** What the batch executor hands back for one request of the batch (same order as the batch). */
export type ItemOutcome<R> = { readonly ok: true; readonly value: R } | { readonly ok: false; readonly error: Error };

/** An entry of a batch as the executor sees it: queue timing is here so results can report it. */
export interface BatchEntry<Req> extends Queued<Req> {
  /** When the batch containing this request started executing. */
  readonly startedAt: number;
}
