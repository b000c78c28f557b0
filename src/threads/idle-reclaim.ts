/**
 * Memory back to the system once a compute thread goes quiet. onnxruntime runs ViT-B's sessions
 * without its arena, so every batch mallocs and frees its activations, and glibc keeps what was
 * freed: after a burst of batch-8 traffic a ViT-B executor sat ≈ 300 MB above what it needed, for
 * good. `busy()` when a batch starts stops the timer; `idle()` when it ends re-arms it (once no
 * batch is running); when `idleMs` pass with none, `reclaim` runs once (memory-reclaim.ts: glibc's
 * malloc_trim on the thread pool). Under steady load the timer never fires, and it never fires
 * while a batch computes (onnxruntime runs leave this thread's event loop free).
 */
export class IdleReclaimer {
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private running = 0;
  /** How many times `reclaim` ran. */
  runs = 0;

  constructor(
    private readonly reclaim: () => void,
    private readonly idleMs = 1000,
  ) {}

  busy(): void {
    this.running++;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  idle(): void {
    this.running = Math.max(0, this.running - 1);
    if (this.closed || this.running > 0) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.runs++;
      this.reclaim();
    }, this.idleMs);
    // Never what keeps a thread or process alive.
    this.timer.unref();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
