/**
 * Imports point down the layers, exactly as ARCHITECTURE.md states them: this test reads the
 * layer block between the `layers:start` / `layers:end` markers there (rows top to bottom, areas
 * on a row separated by `|`, and `exception:` lines) and checks every import in src/ against it,
 * so the map and the code cannot drift apart. It also checks that the jobs table has one owner.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = path.resolve('src');

interface Layers {
  /** Area → row index (0 = top). */
  row: Map<string, number>;
  /** Area → extra targets it may import (areas or file paths under src/ without .ts). */
  extra: Map<string, Set<string>>;
}

export function parseLayers(markdown: string): Layers {
  const start = markdown.indexOf('<!-- layers:start -->');
  const end = markdown.indexOf('<!-- layers:end -->');
  if (start < 0 || end < start) throw new Error('ARCHITECTURE.md lacks the layers block');
  const lines = markdown
    .slice(start, end)
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('<!--') && !l.startsWith('```'));
  const row = new Map<string, number>();
  const extra = new Map<string, Set<string>>();
  let r = 0;
  for (const line of lines) {
    const exception = /^exception:\s*(.+?)\s*→\s*(.+)$/.exec(line);
    if (exception !== null) {
      for (const from of exception[1].split(',').map((x) => x.trim())) {
        const set = extra.get(from) ?? new Set<string>();
        for (const to of exception[2].split(',').map((x) => x.trim())) set.add(to);
        extra.set(from, set);
      }
      continue;
    }
    for (const area of line.split('|').map((x) => x.trim())) row.set(area, r);
    r++;
  }
  return { row, extra };
}

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    return statSync(p).isDirectory() ? files(p) : /\.tsx?$/.test(p) ? [p] : [];
  });
}

const relOf = (file: string) => path.relative(SRC, file).replace(/\\/g, '/').replace(/\.tsx?$/, '');
/** 'src/train/ingest/zip.ts' → 'train'; 'src/server.ts' → 'server'. */
const areaOf = (file: string) => relOf(file).split('/')[0];

function importsOf(file: string): Array<{ spec: string; target: string }> {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)].map((m) => ({
    spec: m[1],
    target: path.resolve(path.dirname(file), m[1]).replace(/\.js$/, '.ts'),
  }));
}

function allowed(layers: Layers, from: string, target: string): boolean {
  const to = areaOf(target);
  if (to === from) return true;
  const extra = layers.extra.get(from);
  if (extra !== undefined && (extra.has(to) || extra.has(relOf(target)))) return true;
  return layers.row.get(to)! > layers.row.get(from)!;
}

const layers = parseLayers(readFileSync(path.resolve('ARCHITECTURE.md'), 'utf8'));
const sources = files(SRC);

describe('layering', () => {
  it('ARCHITECTURE.md names every area of src/, and nothing else', () => {
    expect([...new Set(sources.map(areaOf))].sort()).toEqual([...layers.row.keys()].sort());
  });

  it('every import in src/ points down the layers as ARCHITECTURE.md states them', () => {
    const violations = sources.flatMap((file) =>
      importsOf(file)
        .filter((i) => !allowed(layers, areaOf(file), i.target))
        .map((i) => `${relOf(file)} imports ${i.spec}`),
    );
    expect(violations).toEqual([]);
  });

  it('the rule can fail: an upward or sideways import is caught', () => {
    expect(allowed(layers, 'model', path.join(SRC, 'storage/blob-store.ts'))).toBe(false);
    expect(allowed(layers, 'services', path.join(SRC, 'routes/errors.ts'))).toBe(false);
    expect(allowed(layers, 'train', path.join(SRC, 'serve/index.ts'))).toBe(false);
    expect(allowed(layers, 'train', path.join(SRC, 'services/context.ts'))).toBe(true);
    expect(allowed(layers, 'train', path.join(SRC, 'services/datasets.ts'))).toBe(false);
  });

  it('the jobs table has one owner: only jobs/ (and db/ itself) import the job repositories or tables', () => {
    const violations = sources.flatMap((file) => {
      const area = areaOf(file);
      if (area === 'jobs' || area === 'db') return [];
      const text = readFileSync(file, 'utf8');
      const repo = importsOf(file).filter((i) => /db\/repos\/job(s|-[a-z-]+)$/.test(relOf(i.target)));
      const table = /import\s*{[^}]*\b(jobs|jobEvents)\b[^}]*}\s*from\s*'[./]+\/db\/schema\.js'/.test(text);
      return [...repo.map((i) => `${relOf(file)} imports ${i.spec}`), ...(table ? [`${relOf(file)} imports the jobs table`] : [])];
    });
    expect(violations).toEqual([]);
  });
});
