/**
 * Idempotency records: the first answer to a creating POST, by (scope, key). Claiming is one
 * insert (the primary key decides between concurrent first requests); a record whose time ran out,
 * or whose request died without an answer, is replaced by the next claim.
 */
import { and, eq, isNull, lt, or, sql } from 'drizzle-orm';
import { dbCall } from '../errors.js';
import type { Db } from '../open.js';
import { idempotencyKeys, type IdempotencyRecord } from '../schema.js';

export interface Claim {
  scope: string;
  key: string;
  tenantId: string | null;
  fingerprint: string;
  expiresAt: Date;
  /** A record still without an answer that is older than this was abandoned (its process died). */
  abandonedBefore: Date;
}

/** `claimed`: this request runs; otherwise the record that holds the key. */
export async function claim(db: Db, c: Claim): Promise<{ claimed: true } | { claimed: false; record: IdempotencyRecord }> {
  for (let attempt = 0; attempt < 2; attempt++) {
    const inserted = await dbCall(() =>
      db
        .insert(idempotencyKeys)
        .values({ scope: c.scope, key: c.key, tenantId: c.tenantId, fingerprint: c.fingerprint, expiresAt: c.expiresAt })
        .onConflictDoNothing()
        .returning({ key: idempotencyKeys.key }),
    );
    if (inserted.length > 0) return { claimed: true };
    const [record] = await db
      .select()
      .from(idempotencyKeys)
      .where(and(eq(idempotencyKeys.scope, c.scope), eq(idempotencyKeys.key, c.key)));
    if (record === undefined) continue; // removed in between: claim again
    const now = new Date();
    const stale = record.expiresAt <= now || (record.status === null && record.createdAt < c.abandonedBefore);
    if (!stale) return { claimed: false, record };
    await db
      .delete(idempotencyKeys)
      .where(
        and(
          eq(idempotencyKeys.scope, c.scope),
          eq(idempotencyKeys.key, c.key),
          or(lt(idempotencyKeys.expiresAt, sql`now()`), and(isNull(idempotencyKeys.status), lt(idempotencyKeys.createdAt, c.abandonedBefore))),
        ),
      );
  }
  // Two claims in a row lost to a stale record that another request replaced: it holds the key now.
  const [record] = await db.select().from(idempotencyKeys).where(and(eq(idempotencyKeys.scope, c.scope), eq(idempotencyKeys.key, c.key)));
  return record === undefined ? claim(db, c) : { claimed: false, record };
}

/** The answer of the request that claimed the key. */
export async function complete(db: Db, scope: string, key: string, answer: { status: number; contentType: string; body: string }): Promise<void> {
  await dbCall(() =>
    db
      .update(idempotencyKeys)
      .set({ status: answer.status, contentType: answer.contentType, body: answer.body })
      .where(and(eq(idempotencyKeys.scope, scope), eq(idempotencyKeys.key, key), isNull(idempotencyKeys.status))),
  );
}

/** The claimed request failed: the key is free again, so the client may retry with it. */
export async function release(db: Db, scope: string, key: string): Promise<void> {
  await dbCall(() =>
    db.delete(idempotencyKeys).where(and(eq(idempotencyKeys.scope, scope), eq(idempotencyKeys.key, key), isNull(idempotencyKeys.status))),
  );
}

/** Removes expired records; returns how many. */
export async function deleteExpired(db: Db, now = new Date()): Promise<number> {
  const rows = await dbCall(() => db.delete(idempotencyKeys).where(lt(idempotencyKeys.expiresAt, now)).returning({ key: idempotencyKeys.key }));
  return rows.length;
}
