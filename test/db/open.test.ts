import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql } from 'drizzle-orm';
import { afterAll, describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors.js';
import { MIGRATIONS_DIR, openDatabase, type Db } from '../../src/db/open.js';
import { makeTempDir, openTestPostgres } from '../helpers/db.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/open-pglite.ts', import.meta.url));
const TABLES = ['adapter_aliases', 'adapter_versions', 'adapters', 'api_keys', 'datasets', 'idempotency_keys', 'job_events', 'jobs', 'tenants'];

async function rows<T>(db: Db, query: ReturnType<typeof sql>): Promise<T[]> {
  const r = (await db.execute(query)) as unknown;
  return (Array.isArray(r) ? r : (r as { rows: T[] }).rows) as T[];
}

async function publicTables(db: Db): Promise<string[]> {
  const r = await rows<{ table_name: string }>(
    db,
    sql`select table_name from information_schema.tables where table_schema = 'public' order by table_name`,
  );
  return r.map((x) => x.table_name);
}

async function journalSize(): Promise<number> {
  const journal = JSON.parse(await fs.readFile(path.join(MIGRATIONS_DIR, 'meta/_journal.json'), 'utf8')) as {
    entries: unknown[];
  };
  return journal.entries.length;
}

interface ChildResult {
  ok: boolean;
  code?: string;
  message?: string;
  pid?: number;
}

/** Run the fixture; resolves with its first JSON line (and the child, still running if held). */
function startChild(dir: string, hold = false): Promise<{ result: ChildResult; child: ChildProcess; exited: Promise<number | null> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE, dir, ...(hold ? ['hold'] : [])], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve({ result: JSON.parse(out.slice(0, nl)) as ChildResult, child, exited });
    });
    child.on('error', reject);
    void exited.then((code) => {
      if (!out.includes('\n')) reject(new Error(`child exited ${code} without output`));
    });
  });
}

describe('openDatabase on embedded PGlite', () => {
  let root: string;
  afterAll(async () => {
    if (root) await fs.rm(root, { recursive: true, force: true });
  });

  it('creates missing folders, migrates from empty, and a second process is refused while it is open', async () => {
    root = await makeTempDir('dtl-open');
    const dir = path.join(root, 'nested', 'data', 'pglite'); // parents do not exist yet
    const db = await openDatabase({ DATABASE_URL: undefined, paths: { pgliteDir: dir } });
    try {
      expect(db.kind).toBe('pglite');
      expect(await publicTables(db.db)).toEqual(TABLES);
      const applied = await rows<{ n: number }>(db.db, sql`select count(*)::int as n from drizzle.__drizzle_migrations`);
      expect(applied[0].n).toBe(await journalSize());
      await db.ping();

      const { result, exited } = await startChild(dir);
      expect(await exited).toBe(1);
      expect(result.ok).toBe(false);
      expect(result.code).toBe('database_locked');
      expect(result.message).toContain(`in use by another process (pid ${process.pid}`);
      expect(result.message).toContain('DATABASE_URL');

      // A second open inside the same process is refused too.
      await expect(openDatabase({ DATABASE_URL: undefined, paths: { pgliteDir: dir } })).rejects.toMatchObject({
        code: 'database_locked',
      });
    } finally {
      await db.close();
    }
    await expect(fs.stat(`${dir}.lock`)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('refuses while another process holds it, and takes over once that process is killed', async () => {
    const dir = path.join(root, 'nested', 'data', 'pglite');
    const { result, child, exited } = await startChild(dir, true);
    expect(result.ok).toBe(true);
    const err = await openDatabase({ DATABASE_URL: undefined, paths: { pgliteDir: dir } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).code).toBe('database_locked');
    expect((err as AppError).message).toContain(`pid ${result.pid}`);

    child.kill('SIGKILL'); // a crash: the lock file stays behind with a dead pid
    await exited;
    await fs.stat(`${dir}.lock`); // still there
    const db = await openDatabase({ DATABASE_URL: undefined, paths: { pgliteDir: dir } });
    expect(await publicTables(db.db)).toEqual(TABLES);
    await db.close();
  });

  it('a reopened database keeps committed rows and does not re-run migrations', async () => {
    const dir = path.join(root, 'nested', 'data', 'pglite');
    let db = await openDatabase({ DATABASE_URL: undefined, paths: { pgliteDir: dir } });
    await db.db.execute(sql`insert into tenants (name) values ('kept')`);
    await db.close();
    db = await openDatabase({ DATABASE_URL: undefined, paths: { pgliteDir: dir } });
    const r = await rows<{ name: string }>(db.db, sql`select name from tenants`);
    expect(r.map((x) => x.name)).toEqual(['kept']);
    const applied = await rows<{ n: number }>(db.db, sql`select count(*)::int as n from drizzle.__drizzle_migrations`);
    expect(applied[0].n).toBe(await journalSize());
    await db.close();
  });
});

describe('openDatabase on PostgreSQL', () => {
  it('an unreachable server is a typed unavailable error naming the host, without the password', async () => {
    const err = await openDatabase({
      DATABASE_URL: 'postgres://user:secret@127.0.0.1:1/nothing',
      paths: { pgliteDir: '' },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).code).toBe('unavailable');
    expect((err as AppError).message).toContain('127.0.0.1:1');
    expect((err as AppError).message).not.toContain('secret');
  });

  // Registered only with a server to run on (no skipped tests in the report without one).
  if (process.env.DATABASE_URL) describe('with DATABASE_URL', () => {
    it('migrates an empty database; concurrent opens serialise their migrations', async () => {
      const t = await openTestPostgres({ migrate: false });
      try {
        expect(t.kind).toBe('postgres');
        expect(await publicTables(t.db)).toEqual([]);
        // Three processes' worth of opens at once on the empty database: the advisory lock makes
        // one migrate while the others wait, then find nothing left to do.
        const opened = await Promise.all([1, 2, 3].map(() => openDatabase({ DATABASE_URL: t.url, paths: { pgliteDir: '' } })));
        for (const m of opened) {
          await m.ping();
          await m.close();
        }
        expect(await publicTables(t.db)).toEqual(TABLES);
        const applied = await rows<{ n: number }>(t.db, sql`select count(*)::int as n from drizzle.__drizzle_migrations`);
        expect(applied[0].n).toBe(await journalSize());
      } finally {
        await t.close();
      }
    });
  });
});
