/** Issue 11, item 10: the one text rule (src/text.ts) for names, labels and file names. */
import { describe, expect, it } from 'vitest';
import { checkText, escapeText, nameSchema, normalizeText, textProblem } from '../../src/text.js';

const BIDI = ['\u202A', '\u202B', '\u202C', '\u202D', '\u202E', '\u2066', '\u2067', '\u2068', '\u2069', '\u200E', '\u200F', '\u061C'];
const CONTROL = ['\u0000', '\u0007', '\t', '\n', '\r', '\u001B', '\u007F', '\u0085', '\u009F', '\u2028', '\u2029', '\uFEFF'];

describe('text rule', () => {
  it('refuses every bidirectional control, naming it', () => {
    for (const ch of BIDI) {
      const cp = ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0');
      expect(textProblem(`in${ch}voice.pdf`), cp).toBe(`contains a bidirectional control character (U+${cp})`);
    }
  });

  it('refuses C0/C1 controls, line/paragraph separators and the BOM', () => {
    for (const ch of CONTROL) expect(textProblem(`a${ch}b`), ch.codePointAt(0)!.toString(16)).toMatch(/^contains a control or invisible character \(U\+[0-9A-F]{4}\)$/);
  });

  it('refuses lone surrogates, accepts pairs, joiners and any script', () => {
    expect(textProblem('a\uD800b')).toBe('contains a lone surrogate (not valid Unicode)');
    expect(textProblem('a\uDC00')).toBe('contains a lone surrogate (not valid Unicode)');
    for (const ok of ['cat', 'café', 'кошка', 'قطة', 'חתול', '猫', '👩\u200D🔬', 'می\u200Cخواهم', 'a b.c_d-e']) expect(textProblem(ok), ok).toBeUndefined();
  });

  it('normalises to NFC', () => {
    expect(normalizeText('cafe\u0301')).toBe('café');
    expect(checkText('cafe\u0301')).toEqual({ ok: true, text: 'café' });
    expect(checkText('ab\u202Ecd')).toEqual({ ok: false, reason: 'contains a bidirectional control character (U+202E)' });
  });

  it('escapes refused characters for display', () => {
    expect(escapeText('gnp.\u202Eexe')).toBe('gnp.\\u{202E}exe');
    expect(escapeText('a\u0000b\uD800')).toBe('a\\u{0}b\uFFFD');
  });

  it('nameSchema: NFC first, then the caller’s rules, then the character rule', () => {
    const schema = nameSchema((s) => s.trim().min(1).max(5));
    expect(schema.parse(' cafe\u0301 ')).toBe('café');
    const bad = schema.safeParse('a\u202Eb');
    expect(bad.success).toBe(false);
    expect(bad.error!.issues.map((i) => i.message)).toEqual(['contains a bidirectional control character (U+202E); remove it']);
  });
});
