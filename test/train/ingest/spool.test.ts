/** Upload work folders: spooled under a private folder, cut off at the limit, and swept when a crash left them. */
import fs from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeWorkDir, spoolUpload, sweepWorkDirs } from '../../../src/train/ingest/index.js';
import { makeTempDir } from '../../helpers/db.js';

let tmpDir: string;
beforeAll(async () => {
  tmpDir = await makeTempDir('dtl-spool');
});
afterAll(async () => {
  await fs.rm(tmpDir, { recursive: true, force: true });
});

describe('upload work folders', () => {
  it('spools a stream to a private folder, and removes the folder of an oversized one', async () => {
    const s = await spoolUpload(Readable.from([Buffer.from('hello '), Buffer.from('world')]), { maxBytes: 100, tmpDir });
    expect(s.bytes).toBe(11);
    expect(await fs.readFile(s.path, 'utf8')).toBe('hello world');
    await removeWorkDir(s.workDir);
    await expect(spoolUpload(Readable.from([Buffer.alloc(200)]), { maxBytes: 100, tmpDir })).rejects.toMatchObject({ code: 'payload_too_large' });
    expect(await fs.readdir(tmpDir)).toEqual([]);
  });

  it('sweeps folders older than the grace period and nothing else', async () => {
    const old = await spoolUpload(Readable.from([Buffer.from('left by a crash')]), { maxBytes: 100, tmpDir });
    const fresh = await spoolUpload(Readable.from([Buffer.from('in progress')]), { maxBytes: 100, tmpDir });
    const other = path.join(tmpDir, 'not-ours');
    await fs.mkdir(other);
    const twoHoursAgo = new Date(Date.now() - 2 * 3_600_000);
    await fs.utimes(old.workDir, twoHoursAgo, twoHoursAgo);
    await fs.utimes(other, twoHoursAgo, twoHoursAgo);
    expect(await sweepWorkDirs(tmpDir, 3_600_000)).toBe(1);
    expect((await fs.readdir(tmpDir)).sort()).toEqual([path.basename(fresh.workDir), 'not-ours'].sort());
    expect(await sweepWorkDirs(path.join(tmpDir, 'missing'), 0)).toBe(0);
  });
});
