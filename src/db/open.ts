/**
 * Opens the database the config names and brings its schema up to date: PostgreSQL through
 * postgres-js when DATABASE_URL is set, otherwise embedded PGlite under DATA_DIR guarded by a lock
 * file. Both yield the same drizzle type, so repositories never know which one they run on.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PGlite } from '@electric-sql/pglite';
import { sql } from 'drizzle-orm';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import { drizzle as drizzlePostgres } from 'drizzle-orm/postgres-js';
import { migrate as migratePostgres } from 'drizzle-orm/postgres-js/migrator';
import postgres from 'postgres';
import type { Config } from '../config.js';
import { AppError } from '../errors.js';
import { mapDbError } from './errors.js';
import { acquireLock, type FileLock } from './lock.js';
import * as schema from './schema.js';

export type Schema = typeof schema;
/** The drizzle database (or transaction) type every repository takes; both drivers satisfy it. */
export type Db = PgDatabase<PgQueryResultHKT, Schema>;
export type DbKind = 'pglite' | 'postgres';

export interface Database {
  readonly db: Db;
  readonly kind: DbKind;
  /** Round trip to the database; throws AppError 'unavailable' when it cannot answer. */
  ping(): Promise<void>;
  /** Idempotent. */
  close(): Promise<void>;
  /**
   * Present only where this process is the database's sole writer (embedded PGlite, under its
   * lock file): a number that changes whenever a statement that may write is issued. Read caches
   * use it to know nothing changed since they filled; with PostgreSQL other processes write too,
   * so it is absent and nothing may be cached.
   */
  readonly writeGeneration?: () => number;
}

export type DatabaseConfig = Pick<Config, 'DATABASE_URL'> & { paths: Pick<Config['paths'], 'pgliteDir'> };

export interface OpenOptions {
  /** Apply pending migrations (default true). */
  migrate?: boolean;
  /** postgres-js pool size (default 10). */
  poolSize?: number;
}

/** The checked-in drizzle-kit output, found relative to this file so any working directory works. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../drizzle', import.meta.url));
const MIGRATIONS_SCHEMA = 'drizzle';
/** pg_advisory_lock key serialising migrations when several processes start at once. */
const MIGRATION_LOCK_KEY = 7_301_245_118;

export async function openDatabase(config: DatabaseConfig, options: OpenOptions = {}): Promise<Database> {
  return config.DATABASE_URL !== undefined
    ? openPostgres(config.DATABASE_URL, options)
    : openPglite(config.paths.pgliteDir, options);
}

function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return 'DATABASE_URL';
  }
}

function unavailable(what: string, err: unknown): AppError {
  const mapped = mapDbError(err);
  const reason = err instanceof Error ? err.message : String(err);
  return mapped instanceof AppError && mapped.code !== 'unavailable'
    ? mapped
    : new AppError('unavailable', `${what}: ${reason}`, { cause: err, retryAfterSeconds: 1 });
}

function pinger(db: Db, what: string): () => Promise<void> {
  return async () => {
    try {
      await db.execute(sql`select 1`);
    } catch (err) {
      throw unavailable(`${what} did not answer`, err);
    }
  };
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let p: Promise<void> | undefined;
  return () => (p ??= fn());
}

async function openPostgres(url: string, options: OpenOptions): Promise<Database> {
  const where = `PostgreSQL at ${redact(url)}`;
  const quiet = { onnotice: () => {}, connect_timeout: 10 };
  if (options.migrate !== false) {
    // One connection, so the advisory lock and the migration transaction share a session.
    const client = postgres(url, { ...quiet, max: 1 });
    try {
      await client`select pg_advisory_lock(${MIGRATION_LOCK_KEY})`;
      await migratePostgres(drizzlePostgres({ client }), {
        migrationsFolder: MIGRATIONS_DIR,
        migrationsSchema: MIGRATIONS_SCHEMA,
      });
      await client`select pg_advisory_unlock(${MIGRATION_LOCK_KEY})`;
    } catch (err) {
      throw unavailable(`${where}: could not open or migrate`, err);
    } finally {
      await client.end({ timeout: 5 });
    }
  }
  const client = postgres(url, { ...quiet, max: options.poolSize ?? 10 });
  const db: Db = drizzlePostgres({ client, schema });
  return {
    db,
    kind: 'postgres',
    ping: pinger(db, where),
    close: once(() => client.end({ timeout: 5 })),
  };
}

/** A select that cannot write (no FOR UPDATE / SHARE locking clause either). */
const READ_ONLY = /^\s*select\b(?![\s\S]*\bfor\s+(?:no\s+key\s+)?(?:update|share)\b)/i;

async function openPglite(dir: string, options: OpenOptions): Promise<Database> {
  const where = `embedded database at ${dir}`;
  // PGlite does not create parent folders; the lock file lives beside the data folder.
  await fs.mkdir(path.dirname(dir), { recursive: true });
  const lock: FileLock = await acquireLock(`${dir}.lock`, `the ${where}`);
  let client: PGlite | undefined;
  try {
    client = await PGlite.create(dir);
    // Every statement passes through drizzle's logger, inside transactions too; anything but a
    // plain select counts as a write. PGlite runs one statement (or transaction) at a time.
    let writes = 0;
    const logger = { logQuery: (query: string) => void (READ_ONLY.test(query) || writes++) };
    const db = drizzlePglite({ client, schema, logger });
    if (options.migrate !== false) {
      await migratePglite(db, { migrationsFolder: MIGRATIONS_DIR, migrationsSchema: MIGRATIONS_SCHEMA });
    }
    const pg = client;
    const typed: Db = db;
    return {
      db: typed,
      kind: 'pglite',
      ping: pinger(typed, where),
      writeGeneration: () => writes,
      close: once(async () => {
        try {
          await pg.close();
        } finally {
          await lock.release();
        }
      }),
    };
  } catch (err) {
    await client?.close().catch(() => {});
    await lock.release();
    throw err instanceof AppError ? err : unavailable(`could not open the ${where}`, err);
  }
}
