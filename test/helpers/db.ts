/**
 * Databases for tests. Every suite that touches the database runs on each of `dbTargets()`:
 * embedded PGlite always, real PostgreSQL too when DATABASE_URL is set (CI sets it).
 *
 * - PGlite takes seconds to create, so a migrated template data directory is built once per
 *   machine (keyed by the migrations and the PGlite version) and each test database is a copy of
 *   it (~0.3 s). Still: open one per test file (beforeAll), not one per test.
 * - PostgreSQL: each test database is a fresh database named dtl_t_<time>_<random>, created with
 *   the DATABASE_URL role (it needs CREATEDB, as .ci/run grants) and dropped on close, so test
 *   files running in parallel never see each other's rows.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import { MIGRATIONS_DIR, openDatabase, type Database, type DbKind } from '../../src/db/open.js';

export type { DbKind } from '../../src/db/open.js';

export interface TestDb extends Database {
  /** PGlite only: the DATA_DIR-like folder holding `pglite/` and the lock file. */
  readonly dataDir?: string;
  /** PostgreSQL only: the URL of this test's own database. */
  readonly url?: string;
}

/** The databases suites run on: 'pglite', plus 'postgres' when DATABASE_URL is set. */
export function dbTargets(): DbKind[] {
  return process.env.DATABASE_URL ? ['pglite', 'postgres'] : ['pglite'];
}

export async function openTestDb(kind: DbKind): Promise<TestDb> {
  return kind === 'postgres' ? openTestPostgres() : openTestPglite();
}

/** A fresh temp folder; removed by the caller (or the OS). */
export async function makeTempDir(label = 'dtl-test'): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), `${label}-`));
}

function templateKey(): string {
  const h = createHash('sha256');
  const walk = (dir: string) => {
    for (const name of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(dir, name.name);
      if (name.isDirectory()) walk(p);
      else h.update(name.name).update(readFileSync(p));
    }
  };
  walk(MIGRATIONS_DIR);
  const pkg = path.join(MIGRATIONS_DIR, '..', 'node_modules/@electric-sql/pglite/package.json');
  h.update(readFileSync(pkg));
  return h.digest('hex').slice(0, 16);
}

let templateReady: Promise<string> | undefined;

/** Build (once per machine, race-safe across processes) a migrated PGlite data dir to copy. */
async function pgliteTemplate(): Promise<string> {
  templateReady ??= (async () => {
    const template = path.join(os.tmpdir(), `dtl-pglite-template-${templateKey()}`);
    const ok = await fs.stat(path.join(template, 'PG_VERSION')).then(
      () => true,
      () => false,
    );
    if (ok) return template;
    const build = await makeTempDir('dtl-pglite-build');
    const db = await openDatabase({ DATABASE_URL: undefined, paths: { pgliteDir: path.join(build, 'pglite') } });
    await db.close();
    try {
      await fs.rename(path.join(build, 'pglite'), template);
    } catch (err) {
      // Another test process built it first; theirs is as good as ours.
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
    }
    await fs.rm(build, { recursive: true, force: true });
    return template;
  })();
  return templateReady;
}

/** A migrated PGlite database in its own temp data dir; close() also removes the folder. */
export async function openTestPglite(): Promise<TestDb> {
  const template = await pgliteTemplate();
  const dataDir = await makeTempDir('dtl-pglite');
  const pgliteDir = path.join(dataDir, 'pglite');
  await fs.cp(template, pgliteDir, { recursive: true });
  const db = await openDatabase({ DATABASE_URL: undefined, paths: { pgliteDir } });
  return {
    ...db,
    db: db.db,
    kind: db.kind,
    dataDir,
    close: async () => {
      await db.close();
      await fs.rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Drop test databases left by runs that crashed more than six hours ago. */
async function dropStale(admin: postgres.Sql): Promise<void> {
  const rows = await admin<{ datname: string }[]>`select datname from pg_database where datname like 'dtl\\_t\\_%'`;
  const cutoff = Date.now() / 1000 - 6 * 3600;
  for (const { datname } of rows) {
    const t = Number(datname.split('_')[2]);
    if (Number.isFinite(t) && t < cutoff) await admin.unsafe(`drop database if exists "${datname}" with (force)`).catch(() => {});
  }
}

/**
 * A migrated, empty database of its own on the DATABASE_URL server; close() drops it. With
 * `migrate: false` the database is left entirely empty (for migration tests).
 */
export async function openTestPostgres(options: { migrate?: boolean } = {}): Promise<TestDb> {
  const base = process.env.DATABASE_URL;
  if (!base) throw new Error('openTestPostgres needs DATABASE_URL');
  const name = `dtl_t_${Math.floor(Date.now() / 1000)}_${randomBytes(4).toString('hex')}`;
  const admin = postgres(base, { max: 1, onnotice: () => {} });
  try {
    await dropStale(admin);
    await admin.unsafe(`create database "${name}"`);
  } finally {
    await admin.end({ timeout: 5 });
  }
  const url = new URL(base);
  url.pathname = `/${name}`;
  const db = await openDatabase({ DATABASE_URL: url.toString(), paths: { pgliteDir: '' } },
    { poolSize: 4, migrate: options.migrate },
  );
  return {
    ...db,
    db: db.db,
    kind: db.kind,
    url: url.toString(),
    close: async () => {
      await db.close();
      const a = postgres(base, { max: 1, onnotice: () => {} });
      try {
        await a.unsafe(`drop database if exists "${name}" with (force)`);
      } finally {
        await a.end({ timeout: 5 });
      }
    },
  };
}

/**
 * PostgreSQL only: make this test's own database refuse connections (ALLOW_CONNECTIONS false and
 * every session of it terminated), or accept them again — an outage of one database without
 * touching the shared server. Runs through an admin connection on DATABASE_URL.
 */
export async function setConnectable(db: TestDb, allow: boolean): Promise<void> {
  const base = process.env.DATABASE_URL;
  if (!base || db.url === undefined) throw new Error('setConnectable needs a PostgreSQL test database');
  const name = new URL(db.url).pathname.slice(1);
  const admin = postgres(base, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`alter database "${name}" allow_connections ${allow ? 'true' : 'false'}`);
    if (!allow) await admin`select pg_terminate_backend(pid) from pg_stat_activity where datname = ${name} and pid <> pg_backend_pid()`;
  } finally {
    await admin.end({ timeout: 5 });
  }
}
