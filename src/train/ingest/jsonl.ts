/**
 * The JSONL stream form: one `{"image": <base64>, "label": ..., "split"?: ...}` object per line.
 * Read twice from the spooled file: a first pass parses labels only (so class limits fail before
 * any image is decoded), the second decodes. Lines are bounded: a line over the limit is skipped
 * to its end and reported, never accumulated.
 */
import { createReadStream } from 'node:fs';
import { AppError } from '../../errors.js';
import { ImageTextError, decodeImageText } from '../../model/image-format.js';
import type { LoadedItem } from './builder.js';
import { normaliseLabel, parseSplitName } from './labels.js';
import type { IngestLimits } from './limits.js';
import { labelFromJson } from './manifest.js';
import { EntryProblem, type ProblemLog } from './problems.js';
import type { Candidate, Split } from './types.js';

export type Line = { lineNo: number; text: string } | { lineNo: number; tooLong: true };

/** Lines of a file (LF or CRLF), each at most `maxBytes`; longer ones are yielded as `tooLong`. */
export async function* readLines(file: string, maxBytes: number): AsyncGenerator<Line> {
  let parts: Buffer[] = [];
  let pending = 0;
  let discarding = false;
  let lineNo = 0;
  const emit = (): Line => {
    lineNo += 1;
    if (discarding) return { lineNo, tooLong: true };
    let buf = Buffer.concat(parts, pending);
    if (buf.length > 0 && buf[buf.length - 1] === 0x0d) buf = buf.subarray(0, buf.length - 1);
    return { lineNo, text: buf.toString('utf8') };
  };
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      const end = nl < 0 ? chunk.length : nl;
      if (!discarding) {
        if (pending + (end - start) > maxBytes) {
          discarding = true;
          parts = [];
          pending = 0;
        } else if (end > start) {
          parts.push(chunk.subarray(start, end));
          pending += end - start;
        }
      }
      if (nl < 0) break;
      yield emit();
      parts = [];
      pending = 0;
      discarding = false;
      start = nl + 1;
    }
  }
  if (pending > 0 || discarding) yield emit();
}

export function maxLineBytes(limits: IngestLimits): number {
  return Math.ceil((limits.maxEntryBytes * 4) / 3) + 64 * 1024;
}

type Parsed = { ok: true; obj: Record<string, unknown> } | { ok: false; why: string };

function parseLine(text: string): Parsed {
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch {
    return { ok: false, why: 'line is not valid JSON' };
  }
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) return { ok: false, why: 'line is not a JSON object' };
  return { ok: true, obj: obj as Record<string, unknown> };
}

const where = (lineNo: number) => `line ${lineNo}`;

/** Pass 1: labels and splits of every usable line. */
export async function planJsonl(file: string, limits: IngestLimits, problems: ProblemLog): Promise<Candidate<number>[]> {
  const candidates: Candidate<number>[] = [];
  const labels = new Set<string>();
  let lines = 0;
  for await (const line of readLines(file, maxLineBytes(limits))) {
    if ('text' in line && line.text.trim() === '') continue;
    lines += 1;
    if (lines > limits.maxEntries) {
      throw new AppError('invalid_dataset', `JSONL stream has more than ${limits.maxEntries} lines; the limit is ${limits.maxEntries}`);
    }
    if (!('text' in line)) {
      problems.add(where(line.lineNo), 'too_large', `line is longer than ${maxLineBytes(limits)} bytes`);
      continue;
    }
    const parsed = parseLine(line.text);
    if (!parsed.ok) {
      problems.add(where(line.lineNo), 'invalid_row', parsed.why);
      continue;
    }
    const { obj } = parsed;
    const rawLabel = labelFromJson(obj.label);
    if (typeof obj.image !== 'string' || rawLabel === undefined) {
      problems.add(where(line.lineNo), 'invalid_row', 'line needs "image" (base64 string) and "label" (string or integer)');
      continue;
    }
    const check = normaliseLabel(rawLabel);
    if (!check.ok) {
      problems.add(where(line.lineNo), 'invalid_label', `label '${rawLabel}' is not usable: ${check.reason}`);
      continue;
    }
    let split: Split = 'unassigned';
    if (obj.split !== undefined && obj.split !== null && obj.split !== '') {
      const s = typeof obj.split === 'string' ? parseSplitName(obj.split) : undefined;
      if (s === undefined) {
        problems.add(where(line.lineNo), 'invalid_row', `unknown split ${JSON.stringify(obj.split)} (use train, val or test)`);
        continue;
      }
      split = s;
    }
    labels.add(check.label);
    // Stop reading once the class limit is already broken; checkPlan reports it.
    if (labels.size > limits.maxClasses) {
      throw new AppError('invalid_dataset', `data set has more than ${limits.maxClasses} classes; the limit is ${limits.maxClasses}`, {
        details: { maxClasses: limits.maxClasses },
      });
    }
    candidates.push({ source: where(line.lineNo), label: check.label, split, ref: line.lineNo });
  }
  return candidates;
}

/** Pass 2: the image bytes of each candidate line, in order. */
export async function* loadJsonl(file: string, candidates: Candidate<number>[], limits: IngestLimits): AsyncGenerator<LoadedItem> {
  const indexByLine = new Map(candidates.map((c, i) => [c.ref, i]));
  for await (const line of readLines(file, maxLineBytes(limits))) {
    const index = indexByLine.get(line.lineNo);
    if (index === undefined || !('text' in line)) continue;
    const parsed = parseLine(line.text);
    if (!parsed.ok || typeof parsed.obj.image !== 'string') continue; // cannot happen: pass 1 checked
    let data: Buffer;
    try {
      data = decodeImageText(parsed.obj.image);
    } catch (err) {
      if (!(err instanceof ImageTextError)) throw err;
      yield { index, problem: new EntryProblem('invalid_image', err.message === 'not base64' ? '"image" is not base64' : `"image": ${err.message}`) };
      continue;
    }
    if (data.length > limits.maxEntryBytes) {
      yield { index, problem: new EntryProblem('too_large', `image is ${data.length} bytes; the limit is ${limits.maxEntryBytes}`) };
      continue;
    }
    yield { index, data };
  }
}
