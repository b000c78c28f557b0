/**
 * `npm run chaos [-- --quick] [--out FILE] [--cases a,b]`: the reliability suite. Loopback only,
 * bounded in time (full: about 10 minutes on 2 cores; quick: about 2). The full profile writes
 * docs/reliability.md; any other run writes chaos/results.local.md (not committed) unless --out says.
 * Exit code 1 when any case fails.
 */
import { execSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { renderMarkdown } from './lib/report.js';
import { PROFILES, runSuite, suitePassed, type CaseName } from './suite.js';

const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false }, out: { type: 'string' }, cases: { type: 'string' } } });
const mode = values.quick ? 'quick' : 'full';
const profile = PROFILES[mode];
const cases = values.cases === undefined ? profile.cases : (values.cases.split(',') as CaseName[]);
const started = Date.now();
const { rows, tally } = await runSuite({ ...profile, cases, databaseUrl: process.env.DATABASE_URL, log: (l) => console.log(l) });
const commit = (() => {
  try {
    return execSync('git rev-parse --short HEAD', { encoding: 'utf8' }).trim() + (execSync('git status --porcelain', { encoding: 'utf8' }).trim() === '' ? '' : ' (+ uncommitted changes)');
  } catch {
    return 'unknown';
  }
})();
const out = values.out ?? (mode === 'full' && values.cases === undefined ? 'docs/reliability.md' : 'chaos/results.local.md');
const machine = `${os.cpus().length} × ${os.cpus()[0]?.model.trim() ?? 'cpu'}, Node ${process.version}`;
writeFileSync(out, renderMarkdown(rows, tally, { mode, date: new Date().toISOString().slice(0, 10), machine, commit, seconds: (Date.now() - started) / 1000 }));
console.log(`wrote ${out}`);
process.exit(suitePassed(rows, tally) ? 0 : 1);
