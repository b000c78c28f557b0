/** Every request of the hostile corpus, one at a time on a fresh connection; the service must answer each as listed and stay up. */
import { buildCorpus, type CorpusInput } from '../lib/corpus.js';
import { countStatuses, outsideContract, send, type Answer } from '../lib/http.js';
import type { CaseRow, Tally } from '../lib/report.js';
import type { Service } from '../lib/service.js';

export async function hostileCase(svc: Service, input: CorpusInput, tally: Tally): Promise<CaseRow> {
  const corpus = await buildCorpus(input);
  const answers: Answer[] = [];
  const problems: string[] = [];
  for (const c of corpus) {
    const a = await send(svc.url, c.ask, { timeoutMs: 60_000 });
    answers.push(a);
    if (outsideContract(a)) tally.outsideContract++;
    const why = a.status === 0 ? `no answer (${a.error})` : !c.status.includes(a.status) ? `status ${a.status} ${a.code ?? ''}` : a.status >= 400 && c.codes !== undefined && !c.codes.includes(a.code ?? '') ? `code ${a.code ?? 'none'}` : c.check?.(a);
    if (why !== undefined) problems.push(`${c.name}: ${why} (expected ${c.status.join('/')}${c.codes ? ` ${c.codes.join('/')}` : ''})`);
  }
  const alive = await send(svc.url, { method: 'GET', path: '/healthz' }, { timeoutMs: 5000 });
  const crashes = svc.crashes.length + (alive.status === 200 ? 0 : 1);
  tally.crashes += crashes;
  const groups = [...new Set(corpus.map((c) => c.group))].map((g) => `${corpus.filter((c) => c.group === g).length} ${g}`).join(', ');
  return {
    case: 'hostile inputs',
    sent: `${corpus.length} requests (${groups})`,
    answered: `${JSON.stringify(countStatuses(answers))}; ${problems.length} unexpected; service ${crashes === 0 ? 'up' : 'DOWN'}`,
    goal: 'each answered with its listed 4xx status and code; 0 crashes',
    pass: problems.length === 0 && crashes === 0,
    notes: problems,
  };
}
