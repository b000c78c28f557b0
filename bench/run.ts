/**
 * `npm run bench [-- --quick] [-- --only P1,P6] [-- --out file.json] [-- --no-docs]`
 *
 * Runs every benchmark file in bench/benches/ (in name order), each in a child process of its own
 * (a fresh wasm heap, no warm caches or JIT state shared between benches), prints one table and
 * writes the rows as JSON ([{name, value, goal, pass, detail}], default bench/results.json; --quick and --only runs write the uncommitted bench/results.local.json). A full
 * run of every bench also rewrites docs/bench.md and the README's bench table (--no-docs: not).
 * A bench that crashes becomes a failed row; the others still run. Exit code 0 even when goals are
 * missed (the table says so); 1 only when a bench could not run.
 *
 * Adding a benchmark: drop a file in bench/benches/ that default-exports a `Bench`
 * (bench/lib/types.ts). Sizes for --quick and full mode are the bench's own and must be in its
 * result details.
 */
import { spawn } from 'node:child_process';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { benchMarkdown, cpuDescription, readmeWithTable, type RunMeta } from './lib/report.js';
import type { Bench, BenchResult } from './lib/types.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const benchesDir = path.join(here, 'benches');

interface Args {
  quick: boolean;
  only: string[] | null;
  out: string;
  child: string | null;
  docs: boolean;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { quick: false, only: null, out: '', child: null, docs: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => (a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i]);
    if (a === '--quick') args.quick = true;
    else if (a.startsWith('--only')) args.only = value().split(',').map((s) => s.trim().toUpperCase()).filter(Boolean);
    else if (a.startsWith('--out')) args.out = path.resolve(value());
    else if (a.startsWith('--child')) args.child = value();
    else if (a === '--no-docs') args.docs = false;
    else throw new Error(`unknown argument '${a}' (use --quick, --only P1,P2, --out file, --no-docs)`);
  }
  // Quick and partial runs must not overwrite the committed full results.
  args.out ||= path.join(here, !args.quick && args.only === null ? 'results.json' : 'results.local.json');
  return args;
}

/** Child mode: run one bench file, write its rows to a JSON file. */
async function runChild(file: string, quick: boolean, out: string): Promise<void> {
  const mod = (await import(pathToFileURL(file).href)) as { default: Bench };
  const t0 = Date.now();
  const log = (msg: string) => process.stderr.write(`  [${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}\n`);
  const rows = await mod.default.run({ quick, log });
  await writeFile(out, JSON.stringify(rows));
}

async function benchFiles(): Promise<Array<{ file: string; bench: Bench }>> {
  const names = (await readdir(benchesDir)).filter((n) => /\.ts$/.test(n) && !n.endsWith('.d.ts')).sort();
  const out: Array<{ file: string; bench: Bench }> = [];
  for (const n of names) {
    const file = path.join(benchesDir, n);
    const mod = (await import(pathToFileURL(file).href)) as { default?: Bench };
    if (mod.default?.run === undefined) throw new Error(`${n} does not default-export a Bench`);
    out.push({ file, bench: mod.default });
  }
  return out;
}

function runInChild(file: string, quick: boolean): Promise<BenchResult[]> {
  const out = path.join(os.tmpdir(), `dtl-bench-${process.pid}-${path.basename(file, '.ts')}.json`);
  const argv = ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', file, '--out', out, ...(quick ? ['--quick'] : [])];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, argv, {
      stdio: ['ignore', 'inherit', 'inherit'],
      // s3rver's ListObjectsV2 needs the legacy OpenSSL provider (see stack notes).
      env: { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --openssl-legacy-provider`.trim(), NODE_NO_WARNINGS: '1' },
    });
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      if (code !== 0) {
        reject(new Error(`exited with ${signal ?? code}`));
        return;
      }
      readFile(out, 'utf8')
        .then((text) => resolve(JSON.parse(text) as BenchResult[]))
        .catch(reject)
        .finally(() => void rm(out, { force: true }));
    });
  });
}

function table(rows: BenchResult[]): string {
  const cells = rows.map((r) => [r.name, String(r.value), r.goal || '—', r.pass === null ? '—' : r.pass ? 'pass' : 'MISS']);
  const head = ['benchmark', 'value', 'goal', 'result'];
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) => c.map((x, i) => (i === 1 ? x.padStart(widths[i]) : x.padEnd(widths[i]))).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(line)].join('\n');
}

/** docs/bench.md (its notes kept) and the README's table: only from a full run of every bench. */
async function writeDocs(rows: BenchResult[], meta: RunMeta): Promise<void> {
  const root = path.resolve(here, '..');
  const docPath = path.join(root, 'docs', 'bench.md');
  const previous = await readFile(docPath, 'utf8').catch(() => undefined);
  await writeFile(docPath, benchMarkdown(rows, meta, previous));
  const readmePath = path.join(root, 'README.md');
  const readme = readmeWithTable(await readFile(readmePath, 'utf8'), rows, meta);
  if (readme !== undefined) await writeFile(readmePath, readme);
  process.stderr.write(`wrote docs/bench.md${readme !== undefined ? ' and the README table' : ''}\n`);
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.child !== null) return runChild(args.child, args.quick, args.out);

  const started = Date.now();
  const all = await benchFiles();
  const selected = args.only === null ? all : all.filter(({ bench }) => args.only!.some((id) => bench.id.toUpperCase().split(/[,\s]+/).includes(id)));
  if (selected.length === 0) throw new Error(`no bench matches --only ${args.only?.join(',')}`);
  process.stderr.write(
    `dtl-host bench (${args.quick ? 'quick' : 'full'} mode) — ${new Date().toISOString()}, Node ${process.version}, ` +
      `${cpuDescription()}, ${Math.round(os.totalmem() / 1024 ** 3)} GiB, load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}\n`,
  );
  const rows: BenchResult[] = [];
  let crashed = false;
  for (const { file, bench } of selected) {
    process.stderr.write(`${bench.id}: ${bench.title}\n`);
    const t0 = Date.now();
    try {
      const mode = args.quick ? '[quick mode]' : '[full mode]';
      rows.push(...(await runInChild(file, args.quick)).map((r) => ({ ...r, detail: `${mode} ${r.detail}` })));
    } catch (err) {
      crashed = true;
      rows.push({ name: `${bench.id} ${bench.title}`, value: NaN, goal: '', pass: false, detail: `bench failed: ${(err as Error).message}` });
    }
    process.stderr.write(`${bench.id}: done in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
  }
  await writeFile(args.out, `${JSON.stringify(rows, null, 2)}\n`);
  if (args.docs && !args.quick && args.only === null) await writeDocs(rows, { startedAt: new Date(started), seconds: (Date.now() - started) / 1000, command: 'npm run bench' });
  process.stdout.write(`\n${table(rows)}\n\n`);
  for (const r of rows) process.stdout.write(`${r.name}: ${r.detail}\n\n`);
  process.stdout.write(`${rows.length} rows in ${((Date.now() - started) / 1000).toFixed(1)} s → ${path.relative(process.cwd(), args.out)}\n`);
  if (crashed) process.exitCode = 1;
}

await main();
