/**
 * Which Node the images run: a release line that still gets security fixes (Node 20 reached end
 * of life on 2026-04-30 while the images still ran it), one that package.json's `engines` allows,
 * and the one `npm run test:node` tests by default. The code itself must keep running on Node 20
 * too (dev machines), so `engines` keeps allowing it.
 *
 * End-of-life dates: the Node.js release schedule (github.com/nodejs/Release). A major missing
 * here fails the test until its date is added; a date that passes fails it too — time to move the
 * images to the next LTS line.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { INFRA, ROOT, packageJson, parseDockerfile } from './manifests.js';

const END_OF_LIFE: Record<number, string> = {
  18: '2025-04-30',
  20: '2026-04-30',
  22: '2027-04-30', // "Jod", maintenance LTS
  24: '2028-04-30', // "Krypton"
  26: '2029-04-30',
};
/** The images should not be built on a line with less support left than this. */
const MIN_SUPPORT_DAYS = 90;
const DAY = 86_400_000;

const engines = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string } }).engines.node;

/** The slice of npm's range grammar `engines` uses: `>=A`, `^A`, `A.x`, `A`, joined by `||`. */
function allowsMajor(range: string, major: number): boolean {
  return range.split('||').some((part) => {
    const p = part.trim();
    let m: RegExpExecArray | null;
    if ((m = /^>=\s*(\d+)(\.\d+){0,2}$/.exec(p))) return major >= Number(m[1]);
    if ((m = /^\^(\d+)(\.\d+){0,2}$/.exec(p)) || (m = /^(\d+)(\.(x|\*|\d+)){0,2}$/.exec(p))) return major === Number(m[1]);
    throw new Error(`engines.node part '${p}' is outside what this test reads; extend allowsMajor`);
  });
}

const dockerfiles = fs.readdirSync(path.join(INFRA, 'docker')).filter((f) => f.startsWith('Dockerfile'));

describe.each(dockerfiles)('infra/docker/%s runs a supported Node', (name) => {
  const df = parseDockerfile(fs.readFileSync(path.join(INFRA, 'docker', name), 'utf8'));
  const image = df.globalArgs.get('NODE_IMAGE') ?? '';
  const major = Number(/^node:(\d+)-/.exec(image)?.[1]);

  it('every Node in the image comes from NODE_IMAGE, an official node:<major>-<debian>-slim tag', () => {
    expect(image).toMatch(/^node:\d+-(bookworm|trixie)-slim$/);
    // Stages on a node image use NODE_IMAGE; no other stage is a node image with a Node of its own.
    for (const s of df.stages) if (/^node:/.test(s.from)) expect(s.from, s.name).toBe(image);
  });

  it(`is an LTS line with at least ${MIN_SUPPORT_DAYS} days of security fixes left`, () => {
    expect(major % 2, `Node ${major} is not an LTS line`).toBe(0);
    const eol = END_OF_LIFE[major];
    expect(eol, `no end-of-life date for Node ${major}: add it to END_OF_LIFE`).toBeDefined();
    const left = (Date.parse(eol) - Date.now()) / DAY;
    expect(left, `Node ${major} ends on ${eol}`).toBeGreaterThan(MIN_SUPPORT_DAYS);
  });

  it('package.json engines allows it, and still allows Node 20 for development', () => {
    expect(allowsMajor(engines, major), `engines.node '${engines}'`).toBe(true);
    expect(allowsMajor(engines, 20)).toBe(true);
  });

  it('`npm run test:node` tests this major by default', () => {
    expect(packageJson.scripts['test:node']).toBe('sh scripts/test-on-node.sh');
    const script = fs.readFileSync(path.join(ROOT, 'scripts', 'test-on-node.sh'), 'utf8');
    expect(/^major=(\d+)$/m.exec(script)?.[1]).toBe(String(major));
    // Not part of `npm test`: it downloads a Node.
    expect(packageJson.scripts.test).not.toContain('test:node');
  });
});

describe('scripts/test-on-node.sh', () => {
  // Only its refusals run here: a real run downloads a Node from the npm registry.
  const run = (args: string[], env: Record<string, string> = {}) =>
    spawnSync('sh', [path.join(ROOT, 'scripts', 'test-on-node.sh'), ...args], { env: { PATH: process.env.PATH ?? '', ...env }, encoding: 'utf8', timeout: 10_000 });

  it('refuses a MAJOR that is not a number, and a NODE_VERSION of another major, before fetching anything', () => {
    const bad = run(['lts']);
    expect(bad.status).toBe(64);
    expect(bad.stderr).toContain("MAJOR must be a number, got 'lts'");
    const other = run(['24'], { NODE_VERSION: '22.1.0' });
    expect(other.status).toBe(64);
    expect(other.stderr).toContain('NODE_VERSION=22.1.0 is not Node 24');
    expect(other.stderr).not.toContain('fetching');
  });
});

describe('the engines reader', () => {
  it('reads the range forms it claims to and refuses others', () => {
    expect(allowsMajor('>=20', 24)).toBe(true);
    expect(allowsMajor('>=22', 20)).toBe(false);
    expect(allowsMajor('^20.11 || ^22 || 24.x', 22)).toBe(true);
    expect(allowsMajor('^20.11 || ^22 || 24.x', 26)).toBe(false);
    expect(() => allowsMajor('20 - 24', 22)).toThrow(/extend allowsMajor/);
  });
});
