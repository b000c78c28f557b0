/**
 * Imports point down the layers: routes → services → train | serve → model | jobs | db | storage →
 * config | errors | log | text. This test reads every import in src/ and fails on one that points up or
 * sideways, so the rule in ARCHITECTURE.md cannot rot silently.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = path.resolve('src');
const BASE = ['config', 'config-docs', 'errors', 'log', 'text'];
/** What each area may import besides itself. */
const ALLOWED: Record<string, string[]> = {
  config: ['errors'],
  'config-docs': ['config'],
  errors: [],
  log: [],
  text: [],
  metrics: [...BASE],
  model: [...BASE],
  storage: [...BASE],
  db: [...BASE],
  jobs: [...BASE, 'db'],
  train: [...BASE, 'model', 'jobs', 'db', 'storage', 'services/context'],
  serve: [...BASE, 'model', 'storage', 'db', 'services/context'],
  services: [...BASE, 'train', 'serve', 'model', 'jobs', 'db', 'storage', 'metrics'],
  routes: [...BASE, 'services', 'serve', 'model', 'db', 'storage', 'jobs', 'metrics'],
  app: [...BASE, 'routes', 'services', 'train', 'serve', 'jobs', 'metrics', 'db', 'storage', 'model'],
  cli: [...BASE, 'services', 'train', 'serve', 'model', 'jobs', 'db', 'storage', 'metrics'],
  server: [...BASE, 'app', 'routes', 'services', 'train', 'serve', 'model', 'jobs', 'db', 'storage', 'metrics'],
};

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** 'src/train/ingest/zip.ts' → 'train'; 'src/server.ts' → 'server'. */
function areaOf(file: string): string {
  const rel = path.relative(SRC, file).replace(/\\/g, '/');
  const first = rel.split('/')[0];
  return first.replace(/\.ts$/, '');
}

function allowed(from: string, target: string): boolean {
  const area = areaOf(target);
  if (area === from) return true;
  const rel = path.relative(SRC, target).replace(/\\/g, '/').replace(/\.ts$/, '');
  return (ALLOWED[from] ?? []).some((a) => a === area || a === rel);
}

describe('layering', () => {
  it('every import in src/ points down the layers', () => {
    const violations: string[] = [];
    for (const file of files(SRC)) {
      const from = areaOf(file);
      expect(ALLOWED, `area '${from}' needs a rule`).toHaveProperty(from);
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)) {
        const target = path.resolve(path.dirname(file), m[1]).replace(/\.js$/, '.ts');
        if (!allowed(from, target)) violations.push(`${path.relative(SRC, file)} imports ${m[1]}`);
      }
    }
    expect(violations).toEqual([]);
  });
});
