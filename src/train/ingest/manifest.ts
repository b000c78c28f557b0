/**
 * Manifests inside a zip: `labels.csv` (header `path,label[,split]`, RFC 4180 quoting, any column
 * order, extra columns ignored) or `labels.jsonl` (`{"path","label","split"?}` per line). Rows that
 * cannot be used become problems named `labels.csv:LINE`; a missing header column is fatal.
 */
import { AppError } from '../../errors.js';
import type { ProblemLog } from './problems.js';

export interface ManifestRow {
  /** Where the row is, for problem reports: `labels.csv:12`. */
  where: string;
  path: string;
  label: string;
  split?: string;
}

/** RFC 4180 records with the line each starts on. Quoted fields may hold commas, quotes and newlines. */
export function parseCsv(text: string): { line: number; fields: string[] }[] {
  const records: { line: number; fields: string[] }[] = [];
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let line = 1;
  while (i < text.length) {
    const start = line;
    const fields: string[] = [];
    for (;;) {
      let field = '';
      if (text[i] === '"') {
        i++;
        for (;;) {
          if (i >= text.length) break;
          const ch = text[i];
          if (ch === '"') {
            if (text[i + 1] === '"') {
              field += '"';
              i += 2;
              continue;
            }
            i++;
            break;
          }
          if (ch === '\n') line++;
          field += ch;
          i++;
        }
        // Anything between the closing quote and the separator is kept verbatim (lenient).
        while (i < text.length && text[i] !== ',' && text[i] !== '\n' && text[i] !== '\r') field += text[i++];
      } else {
        while (i < text.length && text[i] !== ',' && text[i] !== '\n' && text[i] !== '\r') field += text[i++];
      }
      fields.push(field);
      if (text[i] === ',') {
        i++;
        continue;
      }
      break;
    }
    if (text[i] === '\r') i++;
    if (text[i] === '\n') i++;
    line++;
    if (!(fields.length === 1 && fields[0].trim() === '')) records.push({ line: start, fields });
  }
  return records;
}

export function parseCsvManifest(text: string, name: string, problems: ProblemLog): ManifestRow[] {
  const records = parseCsv(text);
  if (records.length === 0) throw new AppError('invalid_dataset', `${name} is empty; expected a header 'path,label[,split]'`);
  const header = records[0].fields.map((h) => h.trim().toLowerCase());
  const pathCol = header.indexOf('path');
  const labelCol = header.indexOf('label');
  const splitCol = header.indexOf('split');
  if (pathCol < 0 || labelCol < 0) {
    throw new AppError('invalid_dataset', `${name} header must name the columns path,label[,split]; found '${records[0].fields.join(',')}'`);
  }
  const rows: ManifestRow[] = [];
  for (const r of records.slice(1)) {
    const where = `${name}:${r.line}`;
    const path = r.fields[pathCol];
    const label = r.fields[labelCol];
    if (path === undefined || label === undefined) {
      problems.add(where, 'invalid_row', `row has ${r.fields.length} fields; needs path and label`);
      continue;
    }
    rows.push({ where, path: path.trim(), label, split: splitCol >= 0 ? r.fields[splitCol] : undefined });
  }
  return rows;
}

/** `label` may be a string or an integer (class ids in programmatic exports); it becomes a string. */
export function labelFromJson(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' && Number.isInteger(value)) return String(value);
  return undefined;
}

export function parseJsonlManifest(text: string, name: string, problems: ProblemLog): ManifestRow[] {
  const rows: ManifestRow[] = [];
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  lines.forEach((raw, idx) => {
    if (raw.trim() === '') return;
    const where = `${name}:${idx + 1}`;
    let obj: unknown;
    try {
      obj = JSON.parse(raw);
    } catch {
      problems.add(where, 'invalid_row', 'line is not valid JSON');
      return;
    }
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
      problems.add(where, 'invalid_row', 'line is not a JSON object');
      return;
    }
    const o = obj as Record<string, unknown>;
    const label = labelFromJson(o.label);
    if (typeof o.path !== 'string' || label === undefined) {
      problems.add(where, 'invalid_row', 'line needs "path" (string) and "label" (string or integer)');
      return;
    }
    if (o.split !== undefined && o.split !== null && typeof o.split !== 'string') {
      problems.add(where, 'invalid_row', '"split" must be a string');
      return;
    }
    rows.push({ where, path: o.path.trim(), label, split: typeof o.split === 'string' ? o.split : undefined });
  });
  return rows;
}
