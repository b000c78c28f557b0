/**
 * Turns the chosen candidates into a PreparedDataset: checks the class plan before any decoding,
 * decodes into one preallocated pixel buffer (a slot per candidate, so decodes may finish in any
 * order), then applies the per-class rules and the policy.
 */
import { AppError } from '../../errors.js';
import type { ResampleFilter } from '../../model/backbone-config.js';
import { decodeToRgb, ImageDecodeError } from './image.js';
import { compareLabels } from './labels.js';
import type { IngestLimits } from './limits.js';
import { countExamples, type PreparedDataset } from './prepared.js';
import { EntryProblem, type ProblemLog } from './problems.js';
import { SPLITS, type Candidate, type IngestPolicy } from './types.js';

/** One candidate's bytes (or why they could not be read), in candidate order. */
export type LoadedItem = { index: number; data: Uint8Array } | { index: number; problem: EntryProblem };

function listNames(names: string[], max = 5): string {
  const shown = names.slice(0, max).map((n) => `'${n}'`).join(', ');
  return names.length > max ? `${shown} and ${names.length - max} more` : shown;
}

/**
 * Fails before decoding when the class set is already impossible: too many classes, fewer than
 * two, or more pixels than the prepared buffer may hold.
 */
export function checkPlan(
  candidates: Candidate<unknown>[],
  declaredClasses: Iterable<string>,
  imageSize: number,
  limits: IngestLimits,
): void {
  const classes = new Set<string>(declaredClasses);
  for (const c of candidates) classes.add(c.label);
  if (classes.size > limits.maxClasses) {
    throw new AppError('invalid_dataset', `data set has ${classes.size} classes; the limit is ${limits.maxClasses}`, {
      details: { classes: classes.size, maxClasses: limits.maxClasses },
    });
  }
  if (classes.size < 2) {
    const found = classes.size === 0 ? 'no labelled images' : `only one class (${listNames([...classes])})`;
    throw new AppError('invalid_dataset', `a data set needs at least 2 classes; found ${found}`, {
      details: { classes: [...classes] },
    });
  }
  const bytes = candidates.length * imageSize * imageSize * 3;
  if (bytes > limits.maxPreparedBytes) {
    throw new AppError(
      'invalid_dataset',
      `${candidates.length} images at ${imageSize}×${imageSize} need ${bytes} bytes once preprocessed; the limit is ${limits.maxPreparedBytes}`,
      { details: { images: candidates.length, bytes, maxPreparedBytes: limits.maxPreparedBytes } },
    );
  }
}

async function forEachConcurrent<T>(
  items: AsyncIterable<T>,
  concurrency: number,
  fn: (item: T) => Promise<void>,
  signal?: AbortSignal,
): Promise<void> {
  const running = new Set<Promise<void>>();
  let failure: { err: unknown } | undefined;
  try {
    for await (const item of items) {
      if (failure) break;
      signal?.throwIfAborted();
      const p: Promise<void> = fn(item)
        .catch((err: unknown) => {
          failure ??= { err };
        })
        .finally(() => running.delete(p));
      running.add(p);
      if (running.size >= concurrency) await Promise.race(running);
    }
  } finally {
    // Never leave decodes running past a failure (the caller closes the archive next).
    await Promise.all(running);
  }
  if (failure) throw failure.err;
}

export interface BuildResult {
  prepared: PreparedDataset;
}

export class PreparedBuilder {
  private readonly imageBytes: number;
  private readonly pixels: Uint8Array;
  private readonly ok: Uint8Array;

  constructor(
    private readonly candidates: Candidate<unknown>[],
    private readonly opts: { imageSize: number; resample?: ResampleFilter; limits: IngestLimits; problems: ProblemLog; concurrency: number },
  ) {
    this.imageBytes = opts.imageSize * opts.imageSize * 3;
    this.pixels = new Uint8Array(candidates.length * this.imageBytes);
    this.ok = new Uint8Array(candidates.length);
  }

  /**
   * Decodes every loaded item into its slot; per-file failures become problems, reported in
   * candidate order whatever order the decodes finished in (same upload → same result).
   */
  async fill(items: AsyncIterable<LoadedItem>, signal?: AbortSignal): Promise<void> {
    const { imageSize, limits, problems, concurrency } = this.opts;
    const failed = new Map<number, EntryProblem>();
    try {
      await forEachConcurrent(
        items,
        concurrency,
        async (item) => {
          if ('problem' in item) {
            failed.set(item.index, item.problem);
            return;
          }
          try {
            const rgb = await decodeToRgb(item.data, { imageSize, resample: this.opts.resample, maxPixels: limits.maxImagePixels });
            this.pixels.set(rgb, item.index * this.imageBytes);
            this.ok[item.index] = 1;
          } catch (err) {
            if (err instanceof ImageDecodeError) failed.set(item.index, new EntryProblem('invalid_image', err.message));
            else if (err instanceof EntryProblem) failed.set(item.index, err);
            else throw err;
          }
        },
        signal,
      );
    } finally {
      for (const index of [...failed.keys()].sort((a, b) => a - b)) {
        const p = failed.get(index) as EntryProblem;
        problems.add(this.candidates[index].source, p.code, p.message);
      }
    }
  }

  /**
   * Per-class rules, then the policy. Classes (including declared empty folders) with fewer than
   * `minPerClass` usable images are reported; 'skip' drops them, 'reject' fails with every problem.
   */
  finish(policy: IngestPolicy, declaredClasses: Iterable<string>): BuildResult {
    const { limits, problems, imageSize } = this.opts;
    const perClass = new Map<string, number>();
    for (const name of declaredClasses) perClass.set(name, 0);
    this.candidates.forEach((c, i) => {
      perClass.set(c.label, (perClass.get(c.label) ?? 0) + this.ok[i]);
    });
    const kept: string[] = [];
    for (const [label, n] of [...perClass].sort((a, b) => compareLabels(a[0], b[0]))) {
      if (n === 0) problems.add(label, 'empty_class', `class '${label}' has no usable images`);
      else if (n < limits.minPerClass) {
        problems.add(label, 'too_few_images', `class '${label}' has ${n} usable image${n === 1 ? '' : 's'}; at least ${limits.minPerClass} needed`);
      } else kept.push(label);
    }
    if (policy === 'reject' && problems.total > 0) throw problems.toRejection();
    if (kept.length < 2) {
      throw new AppError(
        'invalid_dataset',
        `a data set needs at least 2 classes with ${limits.minPerClass}+ usable images; ` +
          `${kept.length === 0 ? 'none has' : `only ${listNames(kept)} has`} (${problems.total} problem${problems.total === 1 ? '' : 's'} reported)`,
        { details: { problems: problems.items, problemCount: problems.total } },
      );
    }
    const ids = new Map(kept.map((l, i) => [l, i]));
    let n = 0;
    const sources: string[] = [];
    const labelIds: number[] = [];
    const splits: number[] = [];
    this.candidates.forEach((c, i) => {
      const id = ids.get(c.label);
      if (!this.ok[i] || id === undefined) return;
      if (n !== i) this.pixels.copyWithin(n * this.imageBytes, i * this.imageBytes, (i + 1) * this.imageBytes);
      sources.push(c.source);
      labelIds.push(id);
      splits.push(SPLITS.indexOf(c.split));
      n++;
    });
    let pixels = this.pixels.subarray(0, n * this.imageBytes);
    // Give memory back when many candidates were dropped.
    if (pixels.length < this.pixels.length * 0.75) pixels = pixels.slice();
    const labelIdArr = Int32Array.from(labelIds);
    const splitArr = Uint8Array.from(splits);
    return {
      prepared: {
        imageSize,
        labels: kept,
        counts: countExamples(kept.length, labelIdArr, splitArr),
        sources,
        pixels,
        labelIds: labelIdArr,
        splits: splitArr,
      },
    };
  }
}
