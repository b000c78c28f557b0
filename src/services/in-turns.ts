/**
 * Starts one piece of work per event-loop turn and awaits them all, in order. For work whose
 * start may be synchronous (a small PNG decodes on the calling thread, model/png-exact-size.ts):
 * I/O and timers run between the pieces, so a many-image request never holds the loop for all of
 * them at once, while work that is asynchronous (sharp on libuv's pool) still overlaps.
 */
export async function startInTurns<T, R>(items: readonly T[], start: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const pending: Promise<R>[] = [];
  for (let i = 0; i < items.length; i++) {
    if (i > 0) await new Promise<void>((resolve) => setImmediate(resolve));
    const p = start(items[i]!, i);
    // Awaited together below; meanwhile a rejection must not count as unhandled.
    p.catch(() => {});
    pending.push(p);
  }
  return Promise.all(pending);
}
