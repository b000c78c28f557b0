/**
 * The fast profile of the reliability suite (`npm run chaos -- --quick`): the hostile-input corpus,
 * the cross-tenant probe of every route, a short load and a kill -9 of the worker mid-job, each
 * against the service in its own process. The long profile (outages, 200 clients × 60 s) runs on
 * demand and writes docs/reliability.md.
 */
import { describe, expect, it } from 'vitest';
import { PROFILES, runSuite } from '../../chaos/suite.js';

describe('reliability suite, quick profile', () => {
  it('answers every hostile request as listed, leaks nothing, stays up under load and recovers a killed job exactly once', async () => {
    const lines: string[] = [];
    const { rows, tally } = await runSuite({ ...PROFILES.quick, log: (l) => lines.push(l) });
    const failed = rows.filter((r) => !r.pass).map((r) => `${r.case}: ${r.answered}\n  ${(r.notes ?? []).join('\n  ')}`);
    expect(failed, lines.join('\n')).toEqual([]);
    expect(rows.map((r) => r.case.split(':')[0])).toEqual(['hostile inputs', 'tenant isolation', 'load', 'kill -9 of the worker mid-job']);
    expect(tally).toEqual({ leaks: 0, crashes: 0, outsideContract: 0, lostObjects: 0, livenessMisses: 0 });
  }, 600_000);
});
