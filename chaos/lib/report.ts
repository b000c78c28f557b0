/**
 * One row per case, the suite's verdict, and the markdown page (docs/reliability.md) made from them.
 */
export interface CaseRow {
  case: string;
  /** What was sent (requests, faults). */
  sent: string;
  /** How it was answered (status counts, latencies, RSS, recovery time). */
  answered: string;
  goal: string;
  pass: boolean;
  /** Extra facts for the notes under the table. */
  notes?: string[];
}

/** Totals the issue asks every run to show. */
export interface Tally {
  leaks: number;
  crashes: number;
  outsideContract: number;
  lostObjects: number;
  /** /healthz probes with no answer within 10 s under load (the event loop was busy). */
  livenessMisses: number;
}

export function emptyTally(): Tally {
  return { leaks: 0, crashes: 0, outsideContract: 0, lostObjects: 0, livenessMisses: 0 };
}

export function renderMarkdown(rows: CaseRow[], tally: Tally, meta: { mode: string; date: string; machine: string; commit: string; seconds: number }): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  const lines = [
    '# Reliability',
    '',
    `Written by \`npm run chaos${meta.mode === 'quick' ? ' -- --quick' : ''}\` (chaos/run.ts) on ${meta.date}: ${meta.machine}, code at ${meta.commit}, ${meta.seconds.toFixed(0)} s.`,
    'Every case runs the service as `npm start` does, in its own process, over loopback; see `chaos/README.md`.',
    '',
    `**Totals:** ${tally.leaks} cross-tenant leaks · ${tally.crashes} crashes · ${tally.outsideContract} answers outside {2xx, 4xx, 503} (or none at all) · ${tally.lostObjects} lost or half-written objects · ${tally.livenessMisses} /healthz probes unanswered within 10 s under load.`,
    '',
    '| case | sent | answered | goal | result |',
    '|---|---|---|---|---|',
    ...rows.map((r) => `| ${esc(r.case)} | ${esc(r.sent)} | ${esc(r.answered)} | ${esc(r.goal)} | ${r.pass ? 'pass' : '**FAIL**'} |`),
    '',
  ];
  const notes = rows.filter((r) => r.notes !== undefined && r.notes.length > 0);
  if (notes.length > 0) {
    lines.push('## Notes', '');
    for (const r of notes) {
      lines.push(`**${r.case}**`, '');
      for (const n of r.notes!) lines.push(`- ${n}`);
      lines.push('');
    }
  }
  return lines.join('\n');
}
