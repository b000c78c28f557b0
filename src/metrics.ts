/**
 * Prometheus metrics of one process, on a registry of its own (never prom-client's global one, so
 * two apps in one test process do not collide). HTTP metrics are pushed by the request middleware;
 * everything owned by another component (the serving queue, the adapter cache, the job table) is
 * pulled at scrape time through `sources`, so those components need not know about Prometheus.
 *
 * Names the infrastructure depends on (infra/k8s/base/keda.yaml): the gauge
 * `dtl_classify_queue_depth` (one series per process, no labels) and the counter
 * `dtl_http_requests_total`. No gauge is named *_total (promtool's rule; test/infra/metrics-scrape.test.ts).
 *
 * Tenant ids appear as label values only when per-tenant series are switched on
 * (METRICS_TENANT_LABELS, which requires METRICS_TOKEN): otherwise every series that could carry
 * one is an all-tenants total with `tenant=""` (to Prometheus, no tenant label at all).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** What the serving engine reports (a subset of its batcher's and cache's stats). */
export interface QueueSnapshot {
  queueDepth: number;
  queueDepthByTenant: Record<string, number>;
  inFlight: number;
}

/** The serving executors (threads, or the one in-process executor). */
export interface ExecutorSnapshot {
  count: number;
  busy: number;
  restarts: number;
}

export interface CacheSnapshot {
  hits: number;
  misses: number;
  loads: number;
  loadFailures: number;
  evictions: number;
  residentBytes: number;
  residentCount: number;
}

/** Lookups answered from a process-local cache vs. from the database. */
export interface LookupSnapshot {
  hits: number;
  misses: number;
}

export interface MetricSources {
  queue?: () => QueueSnapshot | undefined;
  cache?: () => CacheSnapshot | undefined;
  executors?: () => ExecutorSnapshot | undefined;
  /** The API-key cache and the adapter-version cache. */
  lookups?: () => { apiKeys: LookupSnapshot; adapterVersions: LookupSnapshot } | undefined;
  /** Jobs by status (e.g. from the jobs table); may be slow, so it is only called on scrape. */
  jobs?: () => Promise<Record<string, number>>;
}

export interface Metrics {
  readonly registry: Registry;
  readonly contentType: string;
  observeRequest(labels: { method: string; route: string; status: number }, seconds: number): void;
  /** Images classified, by tenant (a few hundred tenants per process at most: bounded). */
  countImages(tenantId: string, images: number): void;
  /** One finished serving batch. */
  observeBatch(info: { images: number; ms: number; ok: boolean }): void;
  /** Requests turned away by a limit, by code (rate_limited, quota_exceeded, queue_full). */
  countRejection(code: string, tenantId?: string): void;
  /** A training thread that died without an answer, by why (error, exit, out_of_memory). */
  countTrainThreadFailure(reason: string): void;
  setSources(sources: MetricSources): void;
  /** Per-tenant series on or off (default off). Set before traffic: series already written stay. */
  setTenantLabels(on: boolean): void;
  render(): Promise<string>;
}

/**
 * prom-client's process and Node.js metrics under their standard names (process_*, nodejs_*), so
 * stock dashboards and alerts work — except its three gauges named *_total
 * (nodejs_active_{handles,requests,resources}_total): a gauge must not end in _total (promtool
 * refuses it), and the same numbers are there by type as nodejs_active_{handles,requests,resources}.
 */
export function registerProcessMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry });
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(name);
}

/**
 * `dtl_train_thread_failures_total{reason}`: training threads that died without an answer (an
 * uncaught error, an exit, out of memory). The API's registry and `dtl-host worker`'s both have it.
 */
export function trainThreadFailureCounter(registry: Registry): (reason: string) => void {
  const c = new Counter({
    name: 'dtl_train_thread_failures_total',
    help: 'Training threads that died without an answer (their attempt failed and is retried), by reason: error, exit, out_of_memory.',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  return (reason) => c.inc({ reason });
}

export function createMetrics(options: { defaultMetrics?: boolean; tenantLabels?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (options.defaultMetrics !== false) registerProcessMetrics(registry);
  let sources: MetricSources = {};
  let perTenant = options.tenantLabels ?? false;
  const tenant = (id: string | undefined) => (perTenant ? (id ?? '') : '');

  const httpRequests = new Counter({
    name: 'dtl_http_requests_total',
    help: 'HTTP requests by method, route template and status.',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  });
  const httpDuration = new Histogram({
    name: 'dtl_http_request_duration_seconds',
    help: 'HTTP request latency by method, route template and status.',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  const images = new Counter({
    name: 'dtl_classify_images_total',
    help: 'Images classified, by tenant when per-tenant series are on ("" = all tenants).',
    labelNames: ['tenant'] as const,
    registers: [registry],
  });
  const batchSize = new Histogram({
    name: 'dtl_classify_batch_size',
    help: 'Images per serving micro-batch.',
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
    registers: [registry],
  });
  const batchSeconds = new Histogram({
    name: 'dtl_classify_batch_duration_seconds',
    help: 'Time to run one serving micro-batch.',
    labelNames: ['ok'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const threadFailures = trainThreadFailureCounter(registry);
  const rejections = new Counter({
    name: 'dtl_rejections_total',
    help: 'Requests refused by a limit, by error code and, when per-tenant series are on, tenant.',
    labelNames: ['code', 'tenant'] as const,
    registers: [registry],
  });

  // The total and the per-tenant split are two metrics, not one metric with a tenant="" total
  // beside per-tenant series: then sum(dtl_classify_queue_depth) is the real depth however it is
  // queried (KEDA sums it), and the per-tenant one sums to the same.
  new Gauge({
    name: 'dtl_classify_queue_depth',
    help: 'Classify requests waiting for a batch (all tenants).',
    registers: [registry],
    collect() {
      this.set(sources.queue?.()?.queueDepth ?? 0);
    },
  });
  new Gauge({
    name: 'dtl_classify_queue_depth_by_tenant',
    help: 'Classify requests waiting for a batch, by tenant (only with per-tenant series on).',
    labelNames: ['tenant'] as const,
    registers: [registry],
    collect() {
      this.reset();
      if (!perTenant) return;
      for (const [id, n] of Object.entries(sources.queue?.()?.queueDepthByTenant ?? {})) this.set({ tenant: id }, n);
    },
  });
  new Gauge({
    name: 'dtl_classify_in_flight',
    help: 'Classify requests in the batches being executed now (one per busy executor).',
    registers: [registry],
    collect() {
      this.set(sources.queue?.()?.inFlight ?? 0);
    },
  });
  new Counter({
    name: 'dtl_serve_executor_restarts_total',
    help: 'Serving executor threads restarted after they died (their in-flight requests were answered 503).',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(sources.executors?.()?.restarts ?? 0);
    },
  });
  new Gauge({
    name: 'dtl_serve_executors',
    help: 'Serving executors, by state (all; busy: computing a batch now).',
    labelNames: ['state'] as const,
    registers: [registry],
    collect() {
      const s = sources.executors?.();
      this.set({ state: 'all' }, s?.count ?? 0);
      this.set({ state: 'busy' }, s?.busy ?? 0);
    },
  });
  // The cache keeps its own running totals; they are exported as counters (they only grow), set
  // to the total at each scrape — a counter reset to 0 and raised by the total in one step.
  const cacheCounter = (name: string, help: string, pick: (s: CacheSnapshot) => number) =>
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        const s = sources.cache?.();
        this.reset();
        if (s !== undefined) this.inc(pick(s));
      },
    });
  const cacheGauge = (name: string, help: string, pick: (s: CacheSnapshot) => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        const s = sources.cache?.();
        this.set(s === undefined ? 0 : pick(s));
      },
    });
  cacheCounter('dtl_adapter_cache_hits_total', 'Adapter cache hits.', (s) => s.hits);
  cacheCounter('dtl_adapter_cache_misses_total', 'Adapter cache misses.', (s) => s.misses);
  cacheCounter('dtl_adapter_cache_loads_total', 'Adapters loaded from the blob store.', (s) => s.loads);
  cacheCounter('dtl_adapter_cache_load_failures_total', 'Adapter loads that failed.', (s) => s.loadFailures);
  cacheCounter('dtl_adapter_cache_evictions_total', 'Adapters evicted by the byte budget.', (s) => s.evictions);
  cacheGauge('dtl_adapter_cache_resident_bytes', 'Bytes of adapters held in memory.', (s) => s.residentBytes);
  cacheGauge('dtl_adapter_cache_resident_adapters', 'Adapters held in memory.', (s) => s.residentCount);
  new Counter({
    name: 'dtl_lookup_cache_total',
    help: 'API-key verifications and adapter-version lookups answered from memory (hit) or the database (miss).',
    labelNames: ['cache', 'result'] as const,
    registers: [registry],
    collect() {
      const s = sources.lookups?.();
      this.reset();
      if (s === undefined) return;
      for (const [cache, snap] of [['api_keys', s.apiKeys], ['adapter_versions', s.adapterVersions]] as const) {
        this.inc({ cache, result: 'hit' }, snap.hits);
        this.inc({ cache, result: 'miss' }, snap.misses);
      }
    },
  });
  new Gauge({
    name: 'dtl_training_jobs',
    help: 'Training jobs by status (all processes: read from the job table).',
    labelNames: ['status'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      if (sources.jobs === undefined) return;
      try {
        for (const [status, n] of Object.entries(await sources.jobs())) this.set({ status }, n);
      } catch {
        // A scrape must not fail because the database is briefly unreachable; /readyz reports that.
      }
    },
  });

  return {
    registry,
    contentType: registry.contentType,
    observeRequest(labels, seconds) {
      const l = { method: labels.method, route: labels.route, status: String(labels.status) };
      httpRequests.inc(l);
      httpDuration.observe(l, seconds);
    },
    countImages(tenantId, n) {
      images.inc({ tenant: tenant(tenantId) }, n);
    },
    observeBatch(info) {
      batchSize.observe(info.images);
      batchSeconds.observe({ ok: String(info.ok) }, info.ms / 1000);
    },
    countRejection(code, tenantId) {
      rejections.inc({ code, tenant: tenant(tenantId) });
    },
    countTrainThreadFailure: threadFailures,
    setSources(next) {
      sources = { ...sources, ...next };
    },
    setTenantLabels(on) {
      perTenant = on;
    },
    render: () => registry.metrics(),
  };
}
