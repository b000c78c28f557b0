/**
 * The one rule for text people choose and other people are shown: names (tenants, API keys, data
 * sets, adapters, aliases), labels, and file names inside uploads. Text is compared in Unicode NFC
 * (`café` typed two ways is one name) and refused when it holds characters that are invisible or
 * that reorder what is displayed around them (Trojan Source, CVE-2021-42574): C0/C1 controls,
 * bidirectional marks, embeddings, overrides and isolates, line/paragraph separators, the BOM, and
 * lone surrogates (not text at all). Joiners (U+200C/U+200D) stay: scripts and emoji need them.
 *
 * Every layer imports this module; nothing keeps a copy of the rule.
 */
import { z } from 'zod';

// eslint-disable-next-line no-control-regex
const FORBIDDEN = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ufeff]/u;
const FORBIDDEN_ALL = new RegExp(FORBIDDEN.source, 'gu');
const BIDI = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/u;
// Without the u flag a regexp sees UTF-16 code units, so it can find an unpaired half.
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const LONE_SURROGATE_ALL = new RegExp(LONE_SURROGATE.source, 'g');
const wellFormed = (text: string) => !LONE_SURROGATE.test(text);

/** `U+202E`. */
export const codePointName = (ch: string): string => `U+${ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;

/**
 * Why `text` cannot be used (a sentence naming the first offending character), or undefined when
 * it can. Checks the text as given: normalise with `normalizeText` first.
 */
export function textProblem(text: string): string | undefined {
  if (!wellFormed(text)) return 'contains a lone surrogate (not valid Unicode)';
  const m = FORBIDDEN.exec(text);
  if (m === null) return undefined;
  const kind = BIDI.test(m[0]) ? 'a bidirectional control character' : 'a control or invisible character';
  return `contains ${kind} (${codePointName(m[0])})`;
}

/** NFC; a string that is not well-formed Unicode is returned unchanged (textProblem refuses it). */
export function normalizeText(text: string): string {
  return wellFormed(text) ? text.normalize('NFC') : text;
}

export type TextCheck = { ok: true; text: string } | { ok: false; reason: string };

/** `normalizeText`, then `textProblem`. */
export function checkText(raw: string): TextCheck {
  const text = normalizeText(raw);
  const reason = textProblem(text);
  return reason === undefined ? { ok: true, text } : { ok: false, reason };
}

/** For showing refused text safely (problem lists, messages): forbidden characters as `\u{202E}`. */
export function escapeText(text: string): string {
  return text
    .replace(LONE_SURROGATE_ALL, '\uFFFD')
    .replace(FORBIDDEN_ALL, (ch) => `\\u{${ch.codePointAt(0)!.toString(16).toUpperCase()}}`);
}

/**
 * A zod string schema for a name: NFC first, then `rest` (trim, lengths, patterns), then the
 * character rule. Use it for every name a request carries.
 */
export function nameSchema(rest: (s: z.ZodString) => z.ZodString = (s) => s): z.ZodType<string, string> {
  return rest(z.string().overwrite(normalizeText)).superRefine((s, ctx) => {
    const why = textProblem(s);
    if (why !== undefined) ctx.addIssue({ code: 'custom', message: `${why}; remove it` });
  });
}
