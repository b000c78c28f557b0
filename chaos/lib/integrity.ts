/**
 * "Nothing lost, nothing half-written", checked through the API as a tenant would see it: every
 * version of every adapter downloads whole (its byte size as recorded), and no data set is left
 * 'processing' with nobody working on it.
 */
import type { Answer, Ask, Client } from './http.js';

/** A 503 says "retry later" (Retry-After): a client checking its data does, a few times. */
async function sendRetrying(client: Client, ask: Ask): Promise<Answer> {
  let a = await client.send(ask);
  for (let i = 0; i < 3 && a.status === 503; i++) {
    await new Promise((r) => setTimeout(r, 1000 * Math.min(5, Number(a.headers['retry-after'] ?? 1))));
    a = await client.send(ask);
  }
  return a;
}
import type { TenantFixture } from './fixtures.js';

export interface Integrity {
  versions: number;
  problems: string[];
}

export async function checkIntegrity(client: Client, tenants: TenantFixture[], opts: { allowProcessing?: boolean } = {}): Promise<Integrity> {
  const problems: string[] = [];
  let versions = 0;
  for (const t of tenants) {
    const adapters = await sendRetrying(client, { method: 'GET', path: '/v1/adapters?limit=100', token: t.token });
    if (adapters.status !== 200) {
      problems.push(`tenant ${t.id}: list adapters → ${adapters.status}`);
      continue;
    }
    for (const a of (adapters.body as { items: Array<{ id: string }> }).items) {
      const vs = await sendRetrying(client, { method: 'GET', path: `/v1/adapters/${a.id}/versions`, token: t.token });
      for (const v of (vs.body as { items?: Array<{ version: number; byteSize: number }> }).items ?? []) {
        versions++;
        const file = await sendRetrying(client, { method: 'GET', path: `/v1/adapters/${a.id}/versions/${v.version}/file`, token: t.token });
        const got = file.bytes ?? 0;
        if (file.status !== 200 || got !== v.byteSize) problems.push(`adapter ${a.id} v${v.version}: download → ${file.status}, ${got} bytes of ${v.byteSize}`);
      }
    }
    if (opts.allowProcessing !== true) {
      const ds = await sendRetrying(client, { method: 'GET', path: '/v1/datasets?status=processing', token: t.token });
      const stuck = (ds.body as { items?: Array<{ id: string }> }).items ?? [];
      for (const d of stuck) problems.push(`data set ${d.id} still 'processing'`);
    }
  }
  return { versions, problems };
}
