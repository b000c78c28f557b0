/** Collects per-file problems, keeping at most `max` while counting all of them. */
import { AppError } from '../../errors.js';
import { escapeText } from '../../text.js';
import type { Problem, ProblemCode } from './types.js';

export class ProblemLog {
  readonly items: Problem[] = [];
  total = 0;

  constructor(private readonly max: number) {}

  /** Paths and messages are shown to people: control and bidirectional characters are escaped. */
  add(path: string, code: ProblemCode, message: string): void {
    this.total += 1;
    if (this.items.length < this.max) this.items.push({ path: escapeText(path), code, message: escapeText(message) });
  }

  /** The 'reject' policy's error: one message naming the first files, all kept ones in details. */
  toRejection(): AppError {
    const shown = this.items.slice(0, 10).map((p) => `${p.path} (${p.code}: ${p.message})`);
    const more = this.total > shown.length ? `; and ${this.total - shown.length} more` : '';
    return new AppError(
      'invalid_dataset',
      `data set rejected: ${this.total} problem${this.total === 1 ? '' : 's'}: ${shown.join('; ')}${more}`,
      { details: { problems: this.items, problemCount: this.total } },
    );
  }
}

/** Thrown by a loader for one file that cannot be used; becomes a Problem, never a crash. */
export class EntryProblem extends Error {
  override readonly name = 'EntryProblem';
  constructor(
    readonly code: ProblemCode,
    message: string,
  ) {
    super(message);
  }
}
