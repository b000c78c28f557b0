// Container health check (Dockerfile HEALTHCHECK, compose): GET a route on this container's own
// HTTP port; exit 0 on 200, 1 on anything else, a refused connection or no answer in time.
// Plain Node (no curl or wget in the images). usage: node healthcheck.mjs [path]   (default /healthz)
/* global fetch, AbortSignal */

const path = process.argv[2] ?? '/healthz';
const port = process.env.PORT && process.env.PORT !== '0' ? process.env.PORT : '8080';
// A wildcard bind is reached through loopback; a specific HOST is asked directly.
const host = process.env.HOST ?? '0.0.0.0';
const target = host === '0.0.0.0' || host === '::' || host === '' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
const url = `http://${target}:${port}${path}`;

try {
  const res = await fetch(url, { signal: AbortSignal.timeout(4000) });
  await res.body?.cancel();
  if (res.status !== 200) console.error(`healthcheck: ${url} answered ${res.status}`);
  process.exit(res.status === 200 ? 0 : 1);
} catch (err) {
  console.error(`healthcheck: ${url} failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
