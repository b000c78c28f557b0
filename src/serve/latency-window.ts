/** Load latencies: all-time count, sum and max, and p50/p99 over the most recent `window` samples. */
export class LatencyWindow {
  private readonly samples: number[] = [];
  private next = 0;
  private count = 0;
  private sum = 0;
  private max = 0;

  constructor(private readonly window = 1024) {}

  record(ms: number): void {
    this.count += 1;
    this.sum += ms;
    this.max = Math.max(this.max, ms);
    if (this.samples.length < this.window) this.samples.push(ms);
    else this.samples[this.next] = ms;
    this.next = (this.next + 1) % this.window;
  }

  summary(): { count: number; sum: number; max: number; p50: number; p99: number } {
    const sorted = [...this.samples].sort((a, b) => a - b);
    const pct = (p: number) => (sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]);
    return { count: this.count, sum: this.sum, max: this.max, p50: pct(0.5), p99: pct(0.99) };
  }
}
