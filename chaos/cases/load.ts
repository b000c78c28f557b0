/**
 * N clients classify as fast as they can for T seconds, split over the fixtures' tenants, while a
 * probe asks /healthz every 250 ms on a fresh connection: status counts, latency percentiles, the
 * probe's worst wait, and the service's RSS at start, peak and end (after a short rest).
 */
import { countStatuses, makeClient, outsideContract, percentile, send, type Answer } from '../lib/http.js';
import { classifyAsk, type TenantFixture } from '../lib/fixtures.js';
import type { CaseRow, Tally } from '../lib/report.js';
import type { Service } from '../lib/service.js';

export async function loadCase(svc: Service, tenants: TenantFixture[], images: Buffer[], opts: { clients: number; seconds: number }, tally: Tally): Promise<CaseRow> {
  const client = makeClient(svc.url, { maxSockets: opts.clients });
  const rss = { start: svc.rssMiB(), peak: svc.rssMiB(), end: NaN };
  const sampler = setInterval(() => (rss.peak = Math.max(rss.peak, svc.rssMiB())), 250);
  const answers: Answer[] = [];
  const probes: Answer[] = [];
  const until = Date.now() + opts.seconds * 1000;
  let probing = true;
  const probe = (async () => {
    while (probing) {
      probes.push(await send(svc.url, { method: 'GET', path: '/healthz' }, { timeoutMs: 10_000 }));
      await new Promise((r) => setTimeout(r, 250));
    }
  })();
  await Promise.all(
    Array.from({ length: opts.clients }, async (_, i) => {
      const tenant = tenants[i % tenants.length];
      for (let n = 0; Date.now() < until; n++) {
        answers.push(await client.send(classifyAsk(tenant, images[(i + n) % images.length]), { timeoutMs: 60_000 }));
      }
    }),
  );
  probing = false;
  await probe;
  clearInterval(sampler);
  client.close();
  await new Promise((r) => setTimeout(r, 3000));
  rss.end = svc.rssMiB();
  // The sampler may have missed the top by a few KiB: the end reading is a sample too.
  rss.peak = Math.max(rss.peak, rss.end);
  // A probe with no answer within its 10 s is a liveness miss (the event loop was busy), reported as such;
  // the {2xx, 4xx, 503} total counts what the service answered.
  const livenessMisses = probes.filter((p) => p.status === 0).length;
  const outside = answers.filter(outsideContract).length + probes.filter((p) => p.status !== 0 && outsideContract(p)).length;
  tally.outsideContract += outside;
  tally.livenessMisses += livenessMisses;
  const ms = answers.filter((a) => a.status === 200).map((a) => a.ms);
  const probeWorst = Math.max(...probes.map((p) => p.ms));
  const rssBounded = rss.peak < rss.start + 1024;
  const crashes = svc.crashes.length;
  tally.crashes += crashes;
  const statuses = countStatuses(answers);
  const only2xx = Object.keys(statuses).every((s) => s === '200' || s === '429' || s === '503');
  return {
    case: `load: ${opts.clients} clients × ${opts.seconds} s`,
    sent: `${answers.length} classify requests (${tenants.length} tenants) + ${probes.length} /healthz probes`,
    answered: `${JSON.stringify(statuses)}; p50 ${percentile(ms, 50).toFixed(1)} ms, p99 ${percentile(ms, 99).toFixed(1)} ms; /healthz worst ${probeWorst.toFixed(0)} ms; RSS ${rss.start.toFixed(0)} → ${rss.peak.toFixed(0)} → ${rss.end.toFixed(0)} MiB`,
    goal: 'only 200 (429/503 when a limit says so), probes all 200, RSS peak < start + 1 GiB, 0 crashes',
    pass: outside === 0 && only2xx && probes.every((p) => p.status === 200) && rssBounded && crashes === 0,
    notes: [
      `${(answers.length / opts.seconds).toFixed(0)} requests/s answered; the /healthz probe measures how long the event loop kept a probe waiting under this load.`,
      ...(livenessMisses > 0
        ? [`liveness: ${livenessMisses} of ${probes.length} /healthz probes got no answer within 10 s — model compute runs on the thread that answers HTTP (issue 15 moves it off), so a Kubernetes liveness probe would restart this pod under this load.`]
        : []),
    ],
  };
}
