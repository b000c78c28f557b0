/**
 * Label and split names. Labels are compared after normalisation (Unicode NFC, surrounding
 * whitespace trimmed), so `café` typed two ways or `cat ` vs `cat` are one class: the examples are
 * merged, never reported as duplicates. Case is kept: `Cat` and `cat` are two classes.
 */
import { normalizeText, textProblem } from '../../text.js';
import type { Split } from './types.js';

export const MAX_LABEL_CHARS = 128;

export type LabelCheck = { ok: true; label: string } | { ok: false; reason: string };

/** The text rule of src/text.ts (NFC; no control or bidirectional characters), trimmed and bounded. */
export function normaliseLabel(raw: string): LabelCheck {
  const label = normalizeText(raw).trim();
  const chars = [...label].length;
  if (chars === 0) return { ok: false, reason: 'label is empty' };
  if (chars > MAX_LABEL_CHARS) {
    return { ok: false, reason: `label has ${chars} characters; the limit is ${MAX_LABEL_CHARS}` };
  }
  const why = textProblem(label);
  if (why !== undefined) return { ok: false, reason: `label ${why}` };
  if (label.includes('\uFFFD')) return { ok: false, reason: 'label contains U+FFFD (bad encoding)' };
  return { ok: true, label };
}

/** Folder names and manifest values accepted for each split. */
const SPLIT_ALIASES: Record<string, Split> = {
  train: 'train',
  training: 'train',
  val: 'val',
  valid: 'val',
  validation: 'val',
  test: 'test',
  testing: 'test',
};

/** A split folder or manifest value → split; `undefined` if it names none. */
export function parseSplitName(raw: string): Split | undefined {
  return SPLIT_ALIASES[raw.trim().toLowerCase()];
}

/** Code-unit order, the same on every machine and locale (localeCompare is not). */
export function compareLabels(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
