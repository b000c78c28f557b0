/**
 * Tenant B calls every tenant route of the route table with tenant A's ids (and A's key on
 * admin routes): nothing of A's may come back. The route table is read from the app itself, so a
 * new route is covered without anyone listing it.
 */
import { fillPath, routeTable } from '../../test/routes/route-table.js';
import { countStatuses, outsideContract, send, type Answer } from '../lib/http.js';
import type { CaseRow, Tally } from '../lib/report.js';
import type { Service } from '../lib/service.js';
import type { TenantFixture } from '../lib/fixtures.js';

export async function isolationCase(svc: Service, a: TenantFixture & { keyId: string }, b: TenantFixture, tally: Tally): Promise<CaseRow> {
  const values: Record<string, string> = { adapterId: a.adapterId!, datasetId: a.datasetId!, jobId: a.jobId!, keyId: a.keyId, tenantId: a.id, version: '1', alias: 'latest' };
  const secrets = [a.adapterId!, a.datasetId!, a.jobId!, a.keyId, a.id];
  const answers: Answer[] = [];
  const leaks: string[] = [];
  let sent = 0;
  for (const r of routeTable()) {
    if (r.pathParams.length === 0 && r.auth !== 'admin') continue; // nothing of A's to name
    const path = fillPath(r.path, values);
    const ask = { method: r.method, path, token: r.auth === 'admin' ? a.token : b.token, json: r.hasBody ? { name: 'x', version: 1, images: ['AAAA'], image: 'AAAA', adapters: [a.adapterId] } : undefined };
    const ans = await send(svc.url, ask, { timeoutMs: 30_000 });
    sent++;
    answers.push(ans);
    if (outsideContract(ans)) tally.outsideContract++;
    const shown = secrets.filter((s) => ans.text.includes(s) && !path.includes(s));
    const ok = r.auth === 'admin' ? ans.status === 401 || ans.status === 403 : ans.status === 404 || (ans.status === 400 && shown.length === 0);
    if (!ok || shown.length > 0 || (ans.status >= 200 && ans.status < 300)) leaks.push(`${r.method} ${r.path} → ${ans.status} ${ans.code ?? ''}${shown.length > 0 ? ' (shows A\'s ids)' : ''}`);
  }
  // Fan-out names A's adapter from B's key: not a path parameter, so not in the loop above.
  const fan = await send(svc.url, { method: 'POST', path: '/v1/classify/fan-out', token: b.token, json: { image: 'iVBORw0KGgo=', adapters: [a.adapterId] } });
  sent++;
  answers.push(fan);
  if (fan.status !== 404 && fan.status !== 400) leaks.push(`fan-out with A's adapter → ${fan.status}`);
  tally.leaks += leaks.length;
  return {
    case: 'tenant isolation',
    sent: `${sent} requests: B with A's ids on every tenant route, A's key on every admin route`,
    answered: `${JSON.stringify(countStatuses(answers))}; ${leaks.length} leaks`,
    goal: "404 (or 400 before any lookup) for B, 401/403 for A's key on admin routes; nothing of A's in any body",
    pass: leaks.length === 0,
    notes: leaks,
  };
}
