/**
 * Real service dependencies for the datasets/training service tests: a test database (PGlite or
 * PostgreSQL), a disk blob store and a tiny backbone that is also written to disk as a Hugging
 * Face folder (so `dtl-host predict` and `dtl-host worker` can load the very same weights).
 */
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { loadConfig } from '../../src/config.js';
import * as tenantsRepo from '../../src/db/repos/tenants.js';
import { createLogger } from '../../src/log.js';
import { initBackend, loadBackboneFromDir } from '../../src/model/index.js';
import type { ServiceDeps, TenantCtx } from '../../src/services/context.js';
import { DiskBlobStore, listAll } from '../../src/storage/index.js';
import { makeTempDir, openTestDb, type DbKind, type TestDb } from '../helpers/db.js';
import { writeTinyBackboneDir } from '../helpers/tiny-backbone.js';
import { TINY } from './helpers.js';

export interface ServiceFixture {
  deps: ServiceDeps;
  db: TestDb;
  blobs: DiskBlobStore;
  /** Two tenants, to check isolation. */
  ctx: TenantCtx;
  other: TenantCtx;
  dir: string;
  backboneDir: string;
  /** Blob keys under a prefix. */
  keys(prefix?: string): Promise<string[]>;
  /** Files left in the upload temp folder. */
  tmpLeftovers(): Promise<string[]>;
  close(): Promise<void>;
}

/** `writeBackbone` writes another backbone folder (default: the tiny ViT, TINY). */
export async function openServiceFixture(
  kind: DbKind,
  env: Record<string, string> = {},
  writeBackbone: (dir: string) => Promise<void> = (d) => writeTinyBackboneDir(d, TINY),
): Promise<ServiceFixture> {
  await initBackend('wasm');
  const dir = await makeTempDir('dtl-svc');
  const backboneDir = path.join(dir, 'backbone');
  await writeBackbone(backboneDir);
  const config = loadConfig({ DATA_DIR: dir, LOG_LEVEL: 'silent', BACKBONE: backboneDir, TFJS_BACKEND: 'wasm', ...env });
  const db = await openTestDb(kind);
  const blobs = await DiskBlobStore.open({ root: config.paths.blobDir, fsync: false });
  const backbone = await loadBackboneFromDir(backboneDir);
  const log = createLogger('silent');
  const t1 = await tenantsRepo.create(db.db, { name: 'acme' });
  const t2 = await tenantsRepo.create(db.db, { name: 'globex' });
  return {
    deps: { config, log, database: db, blobs, backbone },
    db,
    blobs,
    ctx: { tenantId: t1.id },
    other: { tenantId: t2.id },
    dir,
    backboneDir,
    keys: async (prefix = '') => (await listAll(blobs, prefix)).map((e) => e.key),
    tmpLeftovers: async () => readdir(path.join(config.paths.dataDir, 'tmp')).catch(() => []),
    close: async () => {
      backbone.dispose();
      await blobs.close();
      await db.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
