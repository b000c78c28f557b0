/**
 * Training progress on stderr for `dtl-host train`. On a terminal: one line redrawn in place (\r)
 * after every epoch, with a bar over the planned epochs. Anywhere else (a log file, CI, a pipe):
 * one plain line per epoch, so logs stay readable and nothing is overwritten.
 */
import type { SearchEvent } from '../train/search.js';
import type { EpochProgress } from '../train/trainer.js';

export interface ProgressStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/** `75`, `4:05`, `1:02:03` — seconds as a clock. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

/** One line per search event: the plan, each candidate at each rung, the rung, the choice. */
export function formatSearch(e: SearchEvent): string {
  switch (e.stage) {
    case 'start':
      return `searching ${e.candidates} recipes (lr ${e.grid.lr.join(', ')} × ${e.grid.variant.join(', ')}; budget ${e.budget}; rungs after epochs ${e.rungs.map((r) => r.until).join(', ')})`;
    case 'candidate':
      return `  rung ${e.rung}: ${e.candidate.variant.padEnd(4)} lr ${String(e.candidate.lr).padEnd(7)} val ${pct(e.candidate.valAccuracy)} (epoch ${e.candidate.bestEpoch})${e.kept ? '  kept' : ''}`;
    case 'rung':
      return `rung ${e.rung} after epoch ${e.epoch}: ${e.kept} kept, ${e.dropped} dropped (${formatDuration(e.seconds)})`;
    case 'chosen':
      return `chose ${e.variant} lr ${e.lr} (val ${pct(e.valAccuracy)}); search took ${formatDuration(e.seconds)}, continuing its run`;
  }
}

/** One epoch as text; `barWidth` > 0 prefixes a bar over the planned epochs. */
export function formatEpoch(p: EpochProgress, barWidth = 0): string {
  const width = String(p.epochs).length;
  const parts = [`epoch ${String(p.epoch).padStart(width)}/${p.epochs}`];
  if (p.candidates !== undefined && p.recipe) parts.push(`${p.candidates} candidates, leader ${p.recipe.variant} lr ${p.recipe.lr}`);
  if (barWidth > 0) {
    const filled = Math.round((p.epoch / p.epochs) * barWidth);
    parts.push(`[${'#'.repeat(filled)}${'.'.repeat(barWidth - filled)}]`);
  }
  parts.push(
    `loss ${p.trainLoss.toFixed(4)}`,
    `train ${pct(p.trainAccuracy)}`,
    p.valAccuracy === null ? 'val n/a' : `val ${pct(p.valAccuracy)}`,
    `lr ${p.lr.toExponential(2)}`,
    `${p.imagesPerSecond.toFixed(0)} img/s`,
    `ETA ${formatDuration(p.etaSeconds)}`,
  );
  return parts.join('  ');
}

export class ProgressReporter {
  private readonly tty: boolean;
  private readonly quiet: boolean;
  /** A bar line is on screen without its newline. */
  private open = false;

  constructor(
    private readonly stream: ProgressStream,
    options: { tty?: boolean; quiet?: boolean } = {},
  ) {
    this.tty = options.tty ?? stream.isTTY === true;
    this.quiet = options.quiet ?? false;
  }

  /** A message on its own line (a bar being drawn is finished first). */
  note(message: string): void {
    if (this.quiet) return;
    this.finish();
    this.stream.write(`${message}\n`);
  }

  epoch(p: EpochProgress): void {
    if (this.quiet) return;
    if (!this.tty) {
      this.stream.write(`${formatEpoch(p)}\n`);
      return;
    }
    // Redraw in place; clear what a longer previous line left behind.
    let line = formatEpoch(p, 20);
    const columns = this.stream.columns ?? 0;
    if (columns > 0 && line.length >= columns) line = formatEpoch(p).slice(0, columns - 1);
    this.stream.write(`\r${line}\x1b[K`);
    this.open = true;
  }

  search(e: SearchEvent): void {
    this.note(formatSearch(e));
  }

  /** Ends a bar line (call once training is over, before printing anything else). */
  finish(): void {
    if (this.open) this.stream.write('\n');
    this.open = false;
  }
}
