/**
 * The maintenance sweep: finishes what interrupted requests and crashed processes left half
 * done, so storage holds only what rows name. Each step is idempotent, so two workers sweeping at
 * once only duplicate work. Nothing younger than `graceMs` is touched: an upload or publish in
 * progress writes its blobs before its rows and must not lose them.
 *
 * - tenants deleted but not purged → purged (deleteTenant is re-runnable);
 * - adapters deleted but not purged → their version files deleted, rows dropped;
 * - data sets whose upload lease lapsed (the process died mid-upload) → failed (readers do this too);
 *   their blobs are then named by no row and go with the orphans;
 * - data sets stuck in 'processing' without a lease (rows older than leases) → blobs and row removed;
 * - blobs under `tenants/` that no row names (a publish or import that died between blob and row,
 *   a delete that died between row and blob) → deleted.
 */
import * as adaptersRepo from '../db/repos/adapters.js';
import * as datasetsRepo from '../db/repos/datasets.js';
import * as idempotencyRepo from '../db/repos/idempotency.js';
import * as maintenanceRepo from '../db/repos/maintenance.js';
import { deletePrefix, listAll } from '../storage/index.js';
import type { ServiceDeps } from './context.js';
import { datasetBlobPrefix } from './datasets.js';
import { deleteTenant } from './tenants.js';

export interface SweepReport {
  tenantsPurged: number;
  adaptersPurged: number;
  /** Uploads whose process died (lease lapsed): marked failed, the row kept for the tenant to see. */
  datasetsFailed: number;
  datasetsRemoved: number;
  orphanBlobsDeleted: number;
  idempotencyKeysExpired: number;
}

export async function sweep({
  deps,
  graceMs,
  now = new Date(),
}: {
  deps: Pick<ServiceDeps, 'database' | 'blobs' | 'log'>;
  graceMs: number;
  now?: Date;
}): Promise<SweepReport> {
  const db = deps.database.db;
  const cutoff = new Date(now.getTime() - graceMs);
  const report: SweepReport = { tenantsPurged: 0, adaptersPurged: 0, datasetsFailed: 0, datasetsRemoved: 0, orphanBlobsDeleted: 0, idempotencyKeysExpired: 0 };

  for (const id of await maintenanceRepo.deletedTenantsBefore(db, cutoff)) {
    await deleteTenant({ deps, id });
    report.tenantsPurged++;
  }
  for (const a of await maintenanceRepo.deletedAdaptersBefore(db, cutoff)) {
    for (const key of a.objectKeys) await deps.blobs.delete(key);
    await adaptersRepo.purge(db, a.tenantId, a.id);
    report.adaptersPurged++;
  }
  // Read the names before listing: a blob written after this read is young, so it is kept. A
  // data set still being written names its blobs only when done: its folder is spared whole.
  const interrupted = await datasetsRepo.expireLeases(db);
  if (interrupted.length > 0) deps.log.warn({ datasets: interrupted.map((d) => d.id) }, 'data sets interrupted while processing marked failed');
  report.datasetsFailed = interrupted.length;
  const named = await maintenanceRepo.referencedBlobKeys(db);
  const writing: string[] = [];
  for (const d of await maintenanceRepo.processingDatasets(db)) {
    if (d.leaseUntil !== null || d.updatedAt >= cutoff) {
      writing.push(datasetBlobPrefix(d.tenantId, d.id));
      continue;
    }
    await deletePrefix(deps.blobs, datasetBlobPrefix(d.tenantId, d.id));
    await datasetsRepo.remove(db, d.tenantId, d.id);
    report.datasetsRemoved++;
  }
  for (const entry of await listAll(deps.blobs, 'tenants/')) {
    if (named.has(entry.key) || writing.some((p) => entry.key.startsWith(p))) continue;
    const head = await deps.blobs.head(entry.key);
    if (head === null || head.modified >= cutoff) continue;
    await deps.blobs.delete(entry.key);
    report.orphanBlobsDeleted++;
  }
  report.idempotencyKeysExpired = await idempotencyRepo.deleteExpired(db, now);
  const total = report.idempotencyKeysExpired + report.tenantsPurged + report.adaptersPurged + report.datasetsFailed + report.datasetsRemoved + report.orphanBlobsDeleted;
  if (total > 0) deps.log.info({ ...report }, 'maintenance sweep cleaned up');
  return report;
}

/**
 * Runs `sweep` on a timer in a process that runs jobs (the server with WORKER_ENABLED, or
 * `dtl-host worker`): first soon after start, so a crash is cleaned up after the restart, then
 * every `intervalMs`. The timer never keeps the process alive; a failed sweep is logged and
 * tried again next time.
 */
export class Sweeper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private stopped = false;

  constructor(
    private readonly deps: Pick<ServiceDeps, 'database' | 'blobs' | 'log'>,
    private readonly options: { intervalMs: number; graceMs: number; firstAfterMs?: number },
  ) {}

  start(): void {
    if (this.options.intervalMs <= 0 || this.timer !== undefined) return;
    this.schedule(this.options.firstAfterMs ?? 60_000);
  }

  /** Waits for a sweep in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = sweep({ deps: this.deps, graceMs: this.options.graceMs })
        .catch((err: unknown) => this.deps.log.warn({ err }, 'maintenance sweep failed'))
        .finally(() => this.schedule(this.options.intervalMs));
    }, ms);
    this.timer.unref();
  }
}
