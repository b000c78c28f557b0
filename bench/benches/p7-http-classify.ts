/**
 * P7 — what HTTP adds to a classification: p50 latency of POST /v1/adapters/{name}/classify with
 * one image, over a real socket, ÷ p50 of the serving engine's own classify for the same adapter
 * and the same (already decoded) image.
 *
 * The server is the real composition root (src/server.ts startServer: config, embedded PGlite,
 * disk blob store, backbone, serving engine, Hono app on a node:http listener; worker off), the
 * client a load generator's kind in a child process (bench/lib/http-client.ts: one kept-alive
 * socket, the request's bytes ready before the clock starts, the answer read by its length),
 * timing the round trip there, so neither the client's work nor its library's is charged to the
 * server. Node's fetch as the client adds ≈ 1 ms per round trip on the 2-core host (undici's
 * request and response objects): a second, shorter pass with it is reported beside the goal. The HTTP side pays JSON + base64 parsing, API-key auth and
 * rate limiting, the adapter/version lookup in the database, PNG decode and preprocessing, the
 * engine, and the JSON answer; the engine side calls deps.engine.classify with the preprocessed
 * pixels (queueing with the configured BATCH_MAX_WAIT_MS, adapter cache, prefix, suffix, head,
 * softmax). Requests alternate HTTP / engine (order flipped each pair), one at a time; latency is
 * wall-clock time (it includes waiting, which CPU time would not see).
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { eq } from 'drizzle-orm';
import sharp from 'sharp';
import { adapterVersions } from '../../src/db/schema.js';
import { createAdapter, preprocessImage, saveAdapter } from '../../src/model/index.js';
import { startServer, type RunningServer } from '../../src/server.js';
import type { AdapterRef } from '../../src/serve/index.js';
import { rng, writeTinyBackboneDir } from '../../test/helpers/tiny-backbone.js';
import { authorsSpec } from '../lib/synthetic.js';
import { startHttpClient, type HttpClient } from '../lib/http-client.js';
import type { Bench } from '../lib/types.js';
import { fmt, median, percentile, result } from '../lib/util.js';

const ADMIN = 'bench-admin-token-0123456789';

interface Setup {
  label: string;
  /** A backbone folder, or null for a synthetic one written to a temp folder. */
  backboneDir: string | null;
  synthetic?: { width: number; depth: number; heads: number; imageSize: number; patchSize: number };
  pairs: number;
}

async function measure(setup: Setup, log: (m: string) => void): Promise<{ http: number[]; engine: number[]; floor: number[]; detail: string }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'dtl-bench-p7-'));
  let server: RunningServer | undefined;
  let client: HttpClient | undefined;
  let fetchClient: HttpClient | undefined;
  try {
    let backboneDir = setup.backboneDir;
    if (backboneDir === null) {
      backboneDir = path.join(dir, 'backbone');
      await writeTinyBackboneDir(backboneDir, { ...setup.synthetic!, mlpDim: 4 * setup.synthetic!.width, seed: 1 });
    }
    server = await startServer({
      HOST: '127.0.0.1',
      PORT: '0',
      LOG_LEVEL: 'silent',
      DATA_DIR: path.join(dir, 'data'),
      BACKBONE: backboneDir,
      TFJS_BACKEND: 'wasm',
      ADMIN_TOKEN: ADMIN,
      WORKER_ENABLED: 'false',
      RATE_LIMIT_RPS: '100000',
      RATE_LIMIT_BURST: '100000',
      ...JSON.parse(process.env.P7_EXTRA ?? '{}'),
    });
    const { url, deps } = server;
    const cfg = deps.backbone.config;
    const call = async (method: string, p: string, token: string, body: unknown, type = 'application/json') => {
      const res = await fetch(`${url}${p}`, {
        method,
        headers: { authorization: `Bearer ${token}`, 'content-type': type },
        body: body instanceof Uint8Array ? body : JSON.stringify(body),
      });
      const text = await res.text();
      if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${text}`);
      return JSON.parse(text) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
    };
    const tenant = await call('POST', '/v1/tenants', ADMIN, { name: 'bench' });
    const key = await call('POST', `/v1/tenants/${tenant.id}/keys`, ADMIN, { name: 'bench', scopes: ['classify', 'train', 'manage'] });
    const token = key.token as string;
    // A DTL adapter with the authors' blocks scaled to this depth, 10 classes, imported over HTTP.
    const adapter = createAdapter(cfg, authorsSpec(cfg.depth, 10), { seed: 7 });
    const file = saveAdapter(adapter, { backbone: { sha256: deps.backbone.identity } });
    adapter.dispose();
    const imported = await call('POST', '/v1/adapters/import?name=p7', token, new Uint8Array(file), 'application/octet-stream');
    const versionId = (imported.version?.id ?? imported.versionId) as string;
    const [row] = await deps.database.db.select().from(adapterVersions).where(eq(adapterVersions.id, versionId));
    if (row === undefined) throw new Error(`imported version ${versionId} not found`);
    const ref: AdapterRef = { key: row.id, objectKey: row.objectKey, backboneId: row.backboneId };

    // One PNG at the backbone's input size; the engine side gets its decoded pixels.
    const s = cfg.imageSize;
    const r = rng(3);
    const png = await sharp(Buffer.from(Uint8Array.from({ length: s * s * 3 }, () => Math.floor(r.uniform() * 256))), { raw: { width: s, height: s, channels: 3 } })
      .png()
      .toBuffer();
    const body = { images: [png.toString('base64')], topK: 5 };
    const pixels = await preprocessImage(png, cfg);
    // The service's own timings of each HTTP answer: where the HTTP side's time goes.
    const parts = { resolve: [] as number[], preprocess: [] as number[], service: [] as number[], outside: [] as number[], compute: [] as number[] };
    // The executor's own prefix + adapter time of each engine-side call, to set beside the HTTP side's.
    const engineCompute: number[] = [];
    client = await startHttpClient('socket');
    const request = { url: `${url}/v1/adapters/p7/classify`, method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) };
    const viaHttp = async () => {
      const { ms, status, answer: a } = await client!.request(request);
      const answer = a as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
      if (status !== 200 || answer.results?.[0]?.predictions?.length !== 5) throw new Error(`unexpected classify answer: ${status} ${JSON.stringify(answer)}`);
      const tm = answer.results[0].timings as { resolveMs: number; preprocessMs: number; totalMs: number; prefixMs: number; adapterMs: number };
      parts.compute.push(tm.prefixMs + tm.adapterMs);
      parts.resolve.push(tm.resolveMs);
      parts.preprocess.push(tm.preprocessMs);
      parts.service.push(tm.totalMs);
      parts.outside.push(ms - tm.totalMs);
      return ms;
    };
    // The floor: the same client's round trip to a route that does nothing (socket, Node's HTTP
    // parser, Hono, the request middleware), so a miss can be told apart from HTTP itself.
    const floor: number[] = [];
    const viaProbe = async () => {
      const { ms, status } = await client!.request({ url: `${url}/healthz`, method: 'GET', headers: {}, body: '' });
      if (status !== 200) throw new Error(`/healthz answered ${status}`);
      floor.push(ms);
    };
    const viaEngine = async () => {
      const t0 = performance.now();
      const [res] = await deps.engine.classify({ tenantId: tenant.id as string, adapter: ref, images: [{ pixels }] });
      const ms = performance.now() - t0;
      if (res.answers[0]?.probs.length !== 10) throw new Error('unexpected engine answer');
      engineCompute.push(res.timings.prefixMs + res.timings.adapterMs);
      return ms;
    };
    log(`P7: ${setup.label}: warm-up`);
    for (let i = 0; i < 5; i++) {
      await viaHttp();
      await viaEngine();
    }
    const http: number[] = [];
    const engine: number[] = [];
    for (const list of [...Object.values(parts), engineCompute]) list.length = 0;
    floor.length = 0;
    log(`P7: ${setup.label}: ${setup.pairs} interleaved pairs`);
    for (let i = 0; i < setup.pairs; i++) {
      if (i % 2 === 0) {
        http.push(await viaHttp());
        engine.push(await viaEngine());
        await viaProbe();
      } else {
        engine.push(await viaEngine());
        http.push(await viaHttp());
      }
    }
    const compute = { http: median(parts.compute), engine: median(engineCompute) };
    // The same pairs, fewer, with Node's fetch as the client: what a Node caller's own library adds.
    fetchClient = await startHttpClient('fetch');
    const viaFetch = async (ask: Parameters<HttpClient['request']>[0]) => {
      const { ms, status } = await fetchClient!.request(ask);
      if (status !== 200) throw new Error(`fetch client: ${ask.url} answered ${status}`);
      return ms;
    };
    for (let i = 0; i < 5; i++) await viaFetch(request);
    const fetched = { http: [] as number[], engine: [] as number[], floor: [] as number[] };
    for (let i = 0; i < Math.max(20, Math.round(setup.pairs / 4)); i++) {
      fetched.http.push(await viaFetch(request));
      fetched.engine.push(await viaEngine());
      fetched.floor.push(await viaFetch({ url: `${url}/healthz`, method: 'GET', headers: {}, body: '' }));
    }
    const detail =
      `With Node's fetch (undici) as the client instead, ${fetched.http.length} pairs: HTTP p50 ${fmt(median(fetched.http))} ms vs engine ${fmt(median(fetched.engine))} ms, ` +
      `ratio ${fmt(median(fetched.http) / median(fetched.engine))}; its /healthz round trip p50 ${fmt(median(fetched.floor))} ms. ` +
      `${setup.label} (width ${cfg.width}, ${cfg.depth} blocks, ${cfg.tokens} tokens, ${s}×${s} PNG of ${png.length} bytes); DTL adapter (reads all blocks, additions in the second half, 10 classes); ` +
      `BATCH_MAX_WAIT_MS ${deps.config.BATCH_MAX_WAIT_MS} (a lone request waits that long for company, on both sides; 0 = continuous batching), SERVE_WORKERS ${deps.config.SERVE_WORKERS} (executor threads; 0 = on the main thread); prefix cache off. ` +
      `HTTP side, p50 of the service's own timings: the classify service call ${fmt(median(parts.service))} ms, of which adapter/version lookup ` +
      `${fmt(median(parts.resolve))} ms (resolver cache ${JSON.stringify(deps.resolver.stats())}) and PNG decode + preprocessing ${fmt(median(parts.preprocess))} ms; outside the service call (socket, Hono, ` +
      `API-key auth (verified keys cached for AUTH_CACHE_TTL_MS), rate limit, body and JSON parsing, answer serialisation) ${fmt(median(parts.outside))} ms. ` +
      `The executor's prefix + adapter compute, p50: ${fmt(compute.http)} ms for an HTTP request, ${fmt(compute.engine)} ms for an engine-side call ` +
      `(the same work; a difference is the compute running slower right after the request's handling on the other core, not time HTTP spends itself).`;
    return { http, engine, floor, detail };
  } finally {
    await client?.close();
    await fetchClient?.close();
    await server?.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
}

const bench: Bench = {
  id: 'P7',
  title: 'HTTP classify p50 at batch 1 ÷ engine-only p50',
  async run({ quick, log }) {
    const setups: Setup[] = [
      { label: 'the bundled backbone (backbones/default, ViT-64/7)', backboneDir: path.resolve('backbones/default'), pairs: Number(process.env.P7_PAIRS ?? (quick ? 40 : 300)) },
    ];
    // Full mode also serves a bigger backbone, where the model's own time dominates.
    if (!quick) {
      setups.push({
        label: 'a 12-block width-192 ViT (P1–P4 size)',
        backboneDir: null,
        synthetic: { width: 192, depth: 12, heads: 3, imageSize: 32, patchSize: 4 },
        pairs: 100,
      });
    }
    const rows = [];
    for (const setup of setups) {
      const m = await measure(setup, log);
      const ratios = m.http.map((h, i) => h / m.engine[i]);
      rows.push(
        result(
          `P7 HTTP classify p50 ÷ engine-only p50, ${setup.label.replace(/ \(.*\)$/, '')}`,
          median(m.http) / median(m.engine),
          { op: '<=', value: 1.15 },
          `p50 over ${setup.pairs} interleaved pairs: HTTP ${fmt(median(m.http))} ms (p90 ${fmt(percentile(m.http, 0.9))}) vs engine ${fmt(median(m.engine))} ms ` +
            `(p90 ${fmt(percentile(m.engine, 0.9))}); HTTP overhead p50 ${fmt(median(m.http) - median(m.engine))} ms; median per-pair ratio ${fmt(median(ratios))}; ` +
            `the same client's GET /healthz round trip (the HTTP floor: socket, parser, Hono, middleware) p50 ${fmt(median(m.floor))} ms, ` +
            `so the goal needs an engine p50 of at least ${fmt(median(m.floor) / 0.15)} ms even if classify added nothing else. ${m.detail}`,
        ),
      );
    }
    return rows;
  },
};

export default bench;
