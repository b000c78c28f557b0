/**
 * Maps a scanned zip (or a walked directory: same paths, same rules) to labelled candidates. Two layouts:
 * - class folders: `<label>/<file>` (deeper folders inside a class are allowed), or with splits
 *   `train|val|test/<label>/<file>` once any top-level folder is a split name;
 * - a manifest `labels.csv` / `labels.jsonl` at the root mapping paths to labels (other files are
 *   ignored).
 * A single wrapping folder (`mydata/cat/1.png`, what zipping a folder produces) is looked through.
 */
import { AppError } from '../../errors.js';
import { normalizeText } from '../../text.js';
import { normaliseLabel, parseSplitName } from './labels.js';
import { parseCsvManifest, parseJsonlManifest, type ManifestRow } from './manifest.js';
import type { ProblemLog } from './problems.js';
import type { Candidate, DatasetForm, Split } from './types.js';
import type { ZipFileEntry } from './zip.js';

const MANIFESTS = ['labels.csv', 'labels.jsonl'] as const;

/**
 * The layout planner's view of an archive: file paths (normalised, `/`-separated) and folder
 * paths. A scanned zip is one; a walked directory (`directory.ts`) is another.
 */
export interface FileTree<F extends { path: string } = ZipFileEntry> {
  files: F[];
  dirs: Set<string>;
}

export interface ZipPlan<F extends { path: string } = ZipFileEntry> {
  form: DatasetForm;
  candidates: Candidate<F>[];
  /** Classes named by folders, even empty ones. */
  declaredClasses: string[];
}

/** The folder everything sits in when a user zipped one folder, else ''. */
function wrapperPrefix(scan: FileTree<{ path: string }>): string {
  const tops = new Set(scan.files.map((f) => f.path.split('/')[0]));
  for (const d of scan.dirs) tops.add(d.split('/')[0]);
  if (tops.size !== 1) return '';
  const [top] = tops;
  if (parseSplitName(top) !== undefined) return '';
  if (scan.files.some((f) => f.path.split('/').length === 1)) return '';
  const hasManifest = scan.files.some((f) => MANIFESTS.some((m) => f.path === `${top}/${m}`));
  const allDeep = scan.files.length > 0 && scan.files.every((f) => f.path.split('/').length >= 3);
  return hasManifest || allDeep ? `${top}/` : '';
}

export async function planZip<F extends { path: string }>(
  scan: FileTree<F>,
  readText: (f: F) => Promise<string>,
  problems: ProblemLog,
): Promise<ZipPlan<F>> {
  const prefix = wrapperPrefix(scan);
  const manifests = scan.files.filter((f) => MANIFESTS.some((m) => f.path === prefix + m));
  if (manifests.length > 1) {
    throw new AppError('invalid_dataset', 'archive has both labels.csv and labels.jsonl; keep one manifest');
  }
  if (manifests.length === 1) return planManifest(scan, manifests[0], prefix, readText, problems);
  return planFolders(scan, prefix, problems);
}

function planFolders<F extends { path: string }>(scan: FileTree<F>, prefix: string, problems: ProblemLog): ZipPlan<F> {
  const rel = (p: string) => (p.startsWith(prefix) ? p.slice(prefix.length) : undefined);
  const topDirs = new Set<string>();
  for (const d of scan.dirs) {
    const r = rel(d);
    if (r) topDirs.add(r.split('/')[0]);
  }
  const splitLayout = [...topDirs].some((t) => parseSplitName(t) !== undefined);
  const labelDepth = splitLayout ? 1 : 0;

  const declared = new Set<string>();
  const badLabels = new Map<string, string>();
  const labelOf = (raw: string): string | undefined => {
    if (badLabels.has(raw)) return undefined;
    const check = normaliseLabel(raw);
    if (!check.ok) {
      badLabels.set(raw, check.reason);
      return undefined;
    }
    return check.label;
  };
  for (const d of scan.dirs) {
    const parts = rel(d)?.split('/');
    if (!parts || parts.length !== labelDepth + 1) continue;
    if (splitLayout && parseSplitName(parts[0]) === undefined) continue;
    const label = labelOf(parts[labelDepth]);
    if (label !== undefined) declared.add(label);
  }

  const candidates: Candidate<F>[] = [];
  for (const f of scan.files) {
    const parts = rel(f.path)?.split('/');
    if (!parts) continue;
    let split: Split = 'unassigned';
    if (splitLayout) {
      const s = parseSplitName(parts[0]);
      if (s === undefined) {
        problems.add(f.path, 'unexpected_path', `file is outside the split folders (train/, val/, test/)`);
        continue;
      }
      split = s;
    }
    if (parts.length < labelDepth + 2) {
      problems.add(f.path, 'unexpected_path', `file is not inside a class folder (expected ${splitLayout ? 'split/label/file' : 'label/file'})`);
      continue;
    }
    const raw = parts[labelDepth];
    const label = labelOf(raw);
    if (label === undefined) {
      problems.add(f.path, 'invalid_label', `folder name '${raw}' is not a usable label: ${badLabels.get(raw)}`);
      continue;
    }
    candidates.push({ source: f.path, label, split, ref: f });
  }
  return { form: 'zip-folders', candidates, declaredClasses: [...declared] };
}

/**
 * Manifest paths are relative to the manifest's folder; `./` and backslashes are tolerated. NFC, as
 * the scanned paths are, so a manifest typed on one system finds files zipped on another.
 */
function manifestPath(p: string): string | undefined {
  const s = normalizeText(p).replace(/\\/g, '/').replace(/^(\.\/)+/, '');
  if (s === '' || s.startsWith('/') || /^[A-Za-z]:/.test(s) || s.includes('\0')) return undefined;
  const parts = s.split('/').filter((x) => x !== '' && x !== '.');
  if (parts.includes('..')) return undefined;
  return parts.join('/');
}

async function planManifest<F extends { path: string }>(
  scan: FileTree<F>,
  manifest: F,
  prefix: string,
  readText: (f: F) => Promise<string>,
  problems: ProblemLog,
): Promise<ZipPlan<F>> {
  const name = manifest.path.slice(prefix.length);
  const text = await readText(manifest);
  const rows: ManifestRow[] = name.endsWith('.csv')
    ? parseCsvManifest(text, name, problems)
    : parseJsonlManifest(text, name, problems);
  const byPath = new Map(scan.files.map((f) => [f.path, f]));
  const seen = new Set<string>();
  const candidates: Candidate<F>[] = [];
  for (const row of rows) {
    const p = manifestPath(row.path);
    if (p === undefined) {
      problems.add(row.where, 'invalid_path', `path '${row.path}' is empty, absolute or climbs out with '..'`);
      continue;
    }
    const full = prefix + p;
    if (seen.has(full)) {
      problems.add(row.where, 'duplicate_path', `path '${p}' is listed more than once; the first row is used`);
      continue;
    }
    seen.add(full);
    const f = byPath.get(full);
    if (f === undefined) {
      problems.add(row.where, 'missing_file', `path '${p}' is not in the archive`);
      continue;
    }
    const check = normaliseLabel(row.label);
    if (!check.ok) {
      problems.add(full, 'invalid_label', `label '${row.label}' is not usable: ${check.reason}`);
      continue;
    }
    let split: Split = 'unassigned';
    if (row.split !== undefined && row.split.trim() !== '') {
      const s = parseSplitName(row.split);
      if (s === undefined) {
        problems.add(row.where, 'invalid_row', `unknown split '${row.split}' (use train, val or test)`);
        continue;
      }
      split = s;
    }
    candidates.push({ source: full, label: check.label, split, ref: f });
  }
  return { form: name.endsWith('.csv') ? 'zip-manifest-csv' : 'zip-manifest-jsonl', candidates, declaredClasses: [] };
}
