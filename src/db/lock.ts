/**
 * Exclusive lock file for the embedded database. PGlite itself does not notice a second process on
 * the same data directory (one of the two silently loses committed writes), so we refuse to open
 * instead. A lock left by a process that died is taken over: same host, and the recorded PID is
 * gone, belongs to a different process incarnation (start time), or the machine rebooted since.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { AppError } from '../errors.js';

interface LockInfo {
  pid: number;
  hostname: string;
  /** Process start time in clock ticks since boot (Linux /proc), to tell a reused PID apart. */
  procStart?: string;
  bootId?: string;
  createdAt: string;
}

export interface FileLock {
  readonly path: string;
  release(): Promise<void>;
}

/** Lock paths this process holds: a second open in the same process must also be refused. */
const heldHere = new Set<string>();

function readProc(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function procStartOf(pid: number): string | undefined {
  const stat = readProc(`/proc/${pid}/stat`);
  if (stat === undefined) return undefined;
  // Field 22 (starttime) comes after the parenthesised command name, which may contain spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[19];
}

function myInfo(): LockInfo {
  return {
    pid: process.pid,
    hostname: os.hostname(),
    procStart: procStartOf(process.pid),
    bootId: readProc('/proc/sys/kernel/random/boot_id'),
    createdAt: new Date().toISOString(),
  };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether the holder recorded in a lock file may still be running. Unknown → assume it is. */
function holderAlive(info: LockInfo, lockPath: string): boolean {
  if (info.hostname !== os.hostname()) return true; // cannot check another machine's processes
  if (info.pid === process.pid) return heldHere.has(lockPath);
  const bootId = readProc('/proc/sys/kernel/random/boot_id');
  if (info.bootId !== undefined && bootId !== undefined && info.bootId !== bootId) return false;
  if (!isAlive(info.pid)) return false;
  const start = procStartOf(info.pid);
  if (info.procStart !== undefined && start !== undefined && info.procStart !== start) return false;
  return true;
}

async function readInfo(lockPath: string): Promise<LockInfo | undefined> {
  try {
    const parsed = JSON.parse(await fs.readFile(lockPath, 'utf8')) as Partial<LockInfo>;
    if (typeof parsed.pid !== 'number' || typeof parsed.hostname !== 'string') return undefined;
    return parsed as LockInfo;
  } catch {
    return undefined;
  }
}

function lockedError(lockPath: string, what: string, info: LockInfo): AppError {
  return new AppError(
    'database_locked',
    `${what} is in use by another process (pid ${info.pid} on ${info.hostname}, since ${info.createdAt}). ` +
      `Stop that process, give this one its own DATA_DIR, or set DATABASE_URL to share a PostgreSQL server. ` +
      `If no such process exists, delete ${lockPath}.`,
    { details: { lockPath, pid: info.pid, hostname: info.hostname } },
  );
}

/** Create the lock file atomically with its content: write a temp file, then hard-link it in place. */
async function tryCreate(lockPath: string): Promise<boolean> {
  const tmp = `${lockPath}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  await fs.writeFile(tmp, JSON.stringify(myInfo()));
  try {
    await fs.link(tmp, lockPath);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    await fs.rm(tmp, { force: true });
  }
}

/**
 * Remove a stale lock under a short-lived takeover mutex, so two processes that both found the
 * same stale lock cannot remove each other's fresh one.
 */
async function removeStale(lockPath: string, stale: LockInfo | undefined): Promise<void> {
  const mutex = `${lockPath}.takeover`;
  try {
    await fs.writeFile(mutex, String(process.pid), { flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    const st = await fs.stat(mutex).catch(() => undefined);
    if (st !== undefined && Date.now() - st.mtimeMs > 10_000) await fs.rm(mutex, { force: true });
    return; // someone else is taking over; the caller retries
  }
  try {
    const now = await readInfo(lockPath);
    const same = JSON.stringify(now) === JSON.stringify(stale);
    if (same) await fs.rm(lockPath, { force: true });
  } finally {
    await fs.rm(mutex, { force: true });
  }
}

/**
 * Take the exclusive lock at `lockPath` (its folder must exist). `what` names the guarded resource
 * in the error message. Throws AppError 'database_locked' while another live process holds it.
 */
export async function acquireLock(lockPath: string, what: string): Promise<FileLock> {
  for (let attempt = 0; attempt < 20; attempt++) {
    if (heldHere.has(lockPath)) {
      throw lockedError(lockPath, what, (await readInfo(lockPath)) ?? myInfo());
    }
    if (await tryCreate(lockPath)) {
      heldHere.add(lockPath);
      return {
        path: lockPath,
        release: async () => {
          if (!heldHere.delete(lockPath)) return;
          const info = await readInfo(lockPath);
          if (info?.pid === process.pid && info.hostname === os.hostname()) await fs.rm(lockPath, { force: true });
        },
      };
    }
    const info = await readInfo(lockPath);
    if (info !== undefined && holderAlive(info, lockPath)) throw lockedError(lockPath, what, info);
    if (info === undefined) {
      // Unreadable content: a lock file written by hand or truncated by a crash; give a live
      // writer a moment (our own writes are atomic, so this is only for foreign files).
      const st = await fs.stat(lockPath).catch(() => undefined);
      if (st !== undefined && Date.now() - st.mtimeMs < 2_000) {
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
    }
    await removeStale(lockPath, info);
    await new Promise((r) => setTimeout(r, 10 + Math.random() * 40));
  }
  throw new AppError('database_locked', `${what}: could not take the lock ${lockPath}; retry or delete it`, {
    details: { lockPath },
  });
}
