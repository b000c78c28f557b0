/**
 * What every service verb receives. `ServiceDeps` is built once by the composition root
 * (src/server.ts) or a CLI command; `TenantCtx` comes from the authenticated API key — a tenant id
 * is never taken from request input.
 */
import type { Config } from '../config.js';
import type { Database } from '../db/open.js';
import type { Logger } from '../log.js';
import type { Backbone } from '../model/index.js';
import type { BlobStore } from '../storage/index.js';

export interface ServiceDeps {
  config: Config;
  log: Logger;
  database: Database;
  blobs: BlobStore;
  backbone: Backbone;
}

export interface TenantCtx {
  tenantId: string;
  requestId?: string;
}
