/**
 * A local directory as a data set source (`dtl-host train --data DIR`): walked into the same
 * path tree a scanned zip gives, so the layout rules (class folders, split folders, manifests, one
 * wrapping folder) are exactly the upload's. Only the reading differs: files come from disk.
 *
 * Links to files are followed; links to folders are not (no cycles, no escaping the tree) and are
 * reported. Names that are not valid UTF-8 (shown by Node with U+FFFD) are reported, as in a zip.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { AppError } from '../../errors.js';
import { normalizeText, textProblem } from '../../text.js';
import { isIgnoredPath } from './entry-names.js';
import type { IngestLimits } from './limits.js';
import { EntryProblem, type ProblemLog } from './problems.js';
import type { FileTree } from './zip-layout.js';

export interface DirFileEntry {
  /** `/`-separated path relative to the root. */
  path: string;
  /** Absolute path on disk. */
  file: string;
  size: number;
}

/** Code-unit order: the same candidate order (so the same training run) on every machine. */
const byName = (a: { name: string }, b: { name: string }) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** Walks `root` (which must be a directory); 'invalid_dataset' past `limits.maxEntries` entries. */
export async function walkDirectory(root: string, limits: IngestLimits, problems: ProblemLog): Promise<FileTree<DirFileEntry>> {
  const files: DirFileEntry[] = [];
  const dirs = new Set<string>();
  let entries = 0;
  // `rel` is where it is on disk; `logical` the same path in NFC, as a zip's paths are.
  const walk = async (rel: string, logical: string): Promise<void> => {
    const items = (await readdir(path.join(root, rel), { withFileTypes: true })).sort(byName);
    for (const item of items) {
      entries += 1;
      if (entries > limits.maxEntries) {
        throw new AppError('invalid_dataset', `directory '${root}' has more than ${limits.maxEntries} entries`);
      }
      const onDisk = rel === '' ? item.name : `${rel}/${item.name}`;
      const p = logical === '' ? normalizeText(item.name) : `${logical}/${normalizeText(item.name)}`;
      if (isIgnoredPath(p)) continue;
      if (item.name.includes('\uFFFD')) {
        problems.add(p, 'invalid_name', 'name is not valid UTF-8; rename it');
        continue;
      }
      const badChars = textProblem(item.name);
      if (badChars !== undefined) {
        problems.add(p, 'invalid_name', `name ${badChars}; rename it`);
        continue;
      }
      const file = path.join(root, onDisk);
      let kind: 'dir' | 'file' | 'other' = item.isDirectory() ? 'dir' : item.isFile() ? 'file' : 'other';
      if (item.isSymbolicLink()) {
        const target = await stat(file).catch(() => undefined);
        if (target?.isDirectory()) {
          problems.add(p, 'unsupported_entry', 'links to folders are not followed');
          continue;
        }
        kind = target?.isFile() ? 'file' : 'other';
      }
      if (kind === 'dir') {
        dirs.add(p);
        await walk(onDisk, p);
      } else if (kind === 'file') {
        files.push({ path: p, file, size: (await stat(file)).size });
      } else {
        problems.add(p, 'unsupported_entry', 'not a regular file (or a broken link)');
      }
    }
  };
  await walk('', '');
  return { files, dirs };
}

/** One file's bytes, or an EntryProblem (too large, unreadable). */
export async function readDirEntry(f: DirFileEntry, maxEntryBytes: number): Promise<Buffer> {
  if (f.size > maxEntryBytes) throw new EntryProblem('too_large', `file is ${f.size} bytes; the limit is ${maxEntryBytes}`);
  try {
    return await readFile(f.file);
  } catch (err) {
    throw new EntryProblem('unsupported_entry', `cannot read the file: ${(err as Error).message}`);
  }
}
