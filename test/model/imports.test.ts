/**
 * The model core's modules import each other without cycles (type-only imports included): a cycle
 * such as forward.ts ↔ forward-batched.ts makes the load order, and which module owns a shared
 * type, depend on who is imported first.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const MODEL = path.resolve('src/model');

function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const rel of readdirSync(MODEL, { recursive: true }) as string[]) {
    if (!rel.endsWith('.ts')) continue;
    const file = path.join(MODEL, rel);
    const targets = [...readFileSync(file, 'utf8').matchAll(/\bfrom\s+'(\.[^']+)'/g)]
      .map((m) => path.resolve(path.dirname(file), m[1].replace(/\.js$/, '.ts')))
      .filter((t) => t.startsWith(MODEL + path.sep));
    graph.set(file, targets);
  }
  return graph;
}

describe('model core imports', () => {
  it('have no cycles', () => {
    const graph = importGraph();
    expect(graph.size).toBeGreaterThan(10);
    const cycles: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const visit = (node: string, stack: string[]) => {
      state.set(node, 'open');
      stack.push(node);
      for (const next of graph.get(node) ?? []) {
        if (state.get(next) === 'open') cycles.push([...stack.slice(stack.indexOf(next)), next].map((f) => path.relative(MODEL, f)).join(' → '));
        else if (!state.has(next)) visit(next, stack);
      }
      stack.pop();
      state.set(node, 'done');
    };
    for (const node of graph.keys()) if (!state.has(node)) visit(node, []);
    expect(cycles).toEqual([]);
  });
});
