/**
 * The README's first session, run as written: its shell blocks between the walkthrough markers
 * are extracted from README.md and run, in bash and in zsh, against the server its first block
 * starts (spawned as `npm start` spawns it, with nothing configured but the README's own
 * variables). The only change is the port in `BASE`. Every JSON answer shown in the README must
 * have the fields the real answer has (values differ: ids, times), and the SSE step's event lines
 * must match — so the README cannot drift from the API.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ROOT, spawnServer } from '../server/spawn.js';

const run = promisify(execFile);
const README = readFileSync(path.join(ROOT, 'README.md'), 'utf8');

interface Step {
  command: string;
  shown: { lang: string; text: string } | undefined;
}

/** The walkthrough's fenced blocks: the server command, then each command with the output shown after it. */
function walkthrough(): { server: string; steps: Step[] } {
  const m = /<!-- walkthrough:start -->([\s\S]*?)<!-- walkthrough:end -->/.exec(README);
  if (m === null) throw new Error('README.md has no walkthrough markers');
  const blocks = [...m[1].matchAll(/```(\w+)\n([\s\S]*?)```/g)].map((b) => ({ lang: b[1], text: b[2] }));
  const [first, ...rest] = blocks;
  const steps: Step[] = [];
  for (const b of rest) {
    if (b.lang === 'sh') steps.push({ command: b.text, shown: undefined });
    else steps[steps.length - 1].shown = b;
  }
  return { server: first.text.trim(), steps };
}

/** Every key path of a JSON value (array items merged), so shown and real answers compare by shape. */
function shape(v: unknown, at = ''): string[] {
  if (Array.isArray(v)) return [...new Set(v.flatMap((x) => shape(x, `${at}[]`)))];
  if (v !== null && typeof v === 'object') {
    return Object.entries(v).flatMap(([k, x]) => {
      // Keys that are the data's own names (class labels) are not part of the API's shape.
      const key = at.endsWith('.classes') ? '*' : k;
      return [`${at}.${key}`, ...shape(x, `${at}.${key}`)];
    });
  }
  return [];
}
const sortedShape = (v: unknown) => [...new Set(shape(v))].sort();

const SEPARATOR = '@@walkthrough-step@@';
const SHELLS = ['bash', 'zsh'] as const;

describe('README walkthrough', () => {
  const { server, steps } = walkthrough();

  it('is a server command and at least five steps, each showing its output', () => {
    expect(server).toMatch(/^(?:[A-Z_]+=\S+ )+npm start$/);
    expect(steps.length).toBeGreaterThanOrEqual(5);
    for (const s of steps) expect(s.shown, s.command).toBeDefined();
    expect(steps[0].command).toMatch(/^BASE=http:\/\/localhost:8080$/m);
  });

  it.each(SHELLS)('runs copy-paste in %s against a started server', async (shell) => {
    const env = Object.fromEntries([...server.matchAll(/([A-Z_]+)=(\S+) /g)].map((x) => [x[1], x[2]]));
    const work = await mkdtemp(path.join(tmpdir(), 'dtl-walkthrough-'));
    const srv = spawnServer({ ...env, PORT: '0', HOST: '127.0.0.1', DATA_DIR: path.join(work, 'data'), LOG_LEVEL: 'info' });
    try {
      const url = await srv.ready;
      // The commands read examples/… relative to the repository root, as a reader's would.
      await symlink(path.join(ROOT, 'examples'), path.join(work, 'examples'));
      const script = steps
        .map((s) => s.command.replace(/^BASE=http:\/\/localhost:8080$/m, `BASE=${url.replace('127.0.0.1', 'localhost')}`))
        .join(`\nprintf '\\n${SEPARATOR}\\n'\n`);
      // -e: a failing step (curl cannot connect, jq cannot parse) fails the test, not a later one.
      const { stdout } = await run(shell, ['-e', '-c', script], { cwd: work, timeout: 300_000, maxBuffer: 16 << 20 });
      const outputs = stdout.split(`\n${SEPARATOR}\n`);
      expect(outputs).toHaveLength(steps.length);
      steps.forEach((s, i) => {
        const real = outputs[i].trim();
        const shown = s.shown!;
        if (shown.lang === 'json') {
          expect(sortedShape(JSON.parse(real)), `step ${i + 1} (${shell}):\n${s.command}`).toEqual(sortedShape(JSON.parse(shown.text)));
        } else {
          const events = (t: string) => t.split('\n').filter((l) => l.startsWith('event: '));
          expect(events(real), `step ${i + 1} (${shell})`).toEqual(events(shown.text));
        }
      });
      // The answers the README promises: a trained version, and the unseen sneaker called a sneaker.
      const classified = JSON.parse(outputs[outputs.length - 1]) as { results: { predictions: { label: string }[] }[] };
      expect(classified.results[0].predictions[0].label).toBe('sneaker');
      expect(existsSync(path.join(work, 'training.json'))).toBe(true);
    } finally {
      srv.proc.kill('SIGTERM');
      await srv.exited;
      await rm(work, { recursive: true, force: true });
    }
  }, 300_000);
});
