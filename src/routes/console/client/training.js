// /console/training: start a job from a data set (defaults, or the advanced fold) and watch it:
// the loss and accuracy curves grow from the job's SSE stream, with the ETA; cancel; why it failed.
import { api, listAll, streamEvents } from './api.js';
import { lineChart } from './charts.js';
import { $, h, fillTable, fmt, onSubmit, showError, notice, param, setParam, requireKey } from './ui.js';

const HP = [
  ['hp-epochs', 'epochs', 'int'],
  ['hp-lr', 'lr', 'float'],
  ['hp-variant', 'variant', 'text'],
  ['hp-budget', 'budget', 'text'],
  ['hp-batch', 'batchSize', 'int'],
  ['hp-warmup', 'warmupEpochs', 'int'],
  ['hp-patience', 'patience', 'int'],
];

function hyperparameters() {
  const out = {};
  for (const [id, key, kind] of HP) {
    const v = $(id).value.trim();
    if (v === '') continue;
    out[key] = kind === 'int' ? parseInt(v, 10) : kind === 'float' ? Number(v) : v;
  }
  return out;
}

let watching; // AbortController of the stream shown

function drawCharts(curve, epochs) {
  const pts = (key) => curve.filter((p) => typeof p[key] === 'number').map((p) => [p.epoch, p[key]]);
  const loss = [{ name: 'training loss', points: pts('trainLoss') }];
  if (pts('valLoss').length) loss.push({ name: 'validation loss', points: pts('valLoss') });
  const acc = [{ name: 'training accuracy', points: pts('trainAccuracy') }];
  if (pts('valAccuracy').length) acc.push({ name: 'validation accuracy', points: pts('valAccuracy') });
  lineChart($('chart-loss'), loss, { id: 'loss', label: 'Loss per epoch', xMax: epochs });
  lineChart($('chart-acc'), acc, { id: 'acc', label: 'Accuracy per epoch', xMax: epochs, yMin: 0, yMax: 1 });
}

function showStatus(job) {
  $('job-status').textContent = job.status + (job.cancelRequested && job.status === 'running' ? ' (cancelling)' : '');
  $('job-status').className = `status ${job.status}`;
  const ended = ['succeeded', 'failed', 'cancelled'].includes(job.status);
  $('job-cancel').hidden = ended;
  if (job.status === 'failed' && job.error) $('job-error').textContent = `Training failed: ${job.error.message} (${job.error.code})`;
  if (job.status === 'succeeded' && job.result) {
    const r = job.result;
    $('job-done').replaceChildren(
      `Published version ${r.version}${typeof r.accuracy === 'number' ? ` (accuracy ${fmt.pct(r.accuracy)})` : ''}. `,
      h('a', { href: `/console/adapters?adapter=${r.adapterId}&version=${r.version}` }, 'Open its metrics'),
      ' · ',
      h('a', { href: `/console/try?adapter=${r.adapterId}` }, 'Try it'),
    );
    $('job-eta').textContent = 'done';
  }
  if (ended) refreshJobs().catch(() => {});
}

async function watch(jobId) {
  if (watching) watching.abort();
  watching = new AbortController();
  setParam('job', jobId);
  $('job').hidden = false;
  $('job-title').textContent = `Job ${jobId.slice(0, 8)}`;
  for (const id of ['job-error', 'job-done']) $(id).textContent = '';
  for (const id of ['job-epoch', 'job-eta', 'job-acc']) $(id).textContent = '–';
  const curve = [];
  let epochs = 1;
  drawCharts(curve, epochs);
  showStatus(await api('GET', `/v1/jobs/${encodeURIComponent(jobId)}`));
  await streamEvents(
    `/v1/jobs/${encodeURIComponent(jobId)}/events`,
    (type, ev) => {
      if (type === 'progress') {
        const p = ev.data;
        // A retried job starts its curve over.
        if (curve.length && p.epoch <= curve[curve.length - 1].epoch) curve.length = 0;
        curve.push(p);
        epochs = p.epochs || epochs;
        $('job-epoch').textContent = `${p.epoch} of ${p.epochs}${p.candidates > 1 ? ` (searching: ${p.candidates} recipes)` : ''}`;
        $('job-eta').textContent = fmt.seconds(p.etaSeconds);
        $('job-acc').textContent = fmt.pct(p.valAccuracy ?? p.trainAccuracy);
        drawCharts(curve, epochs);
      } else if (type === 'status') {
        $('job-status').textContent = ev.data.status;
        $('job-status').className = `status ${ev.data.status}`;
      } else if (type === 'end') {
        showStatus(ev);
      } else if (type === 'error') {
        $('job-error').textContent = `${ev.error.message} (${ev.error.code})`;
      }
    },
    watching.signal,
  );
}

$('job-cancel').addEventListener('click', async () => {
  const id = param('job');
  try {
    showStatus(await api('POST', `/v1/jobs/${encodeURIComponent(id)}/cancel`));
  } catch (err) {
    notice(String(err), 'error');
  }
});

onSubmit('train-form', async () => {
  showError('train-error', '');
  try {
    const started = await api('POST', '/v1/adapters', {
      json: { datasetId: $('train-dataset').value, name: $('train-name').value.trim(), hyperparameters: hyperparameters() },
    });
    await refreshJobs();
    watch(started.job.id).catch((err) => showError('job-error', err));
  } catch (err) {
    showError('train-error', err);
  }
});

async function refreshJobs() {
  const jobs = await listAll('/v1/jobs', { limit: 20, maxPages: 1 });
  fillTable(
    'jobs-table',
    jobs.map((j) =>
      h(
        'tr',
        {},
        h('td', {}, h('a', { href: `?job=${j.id}`, onclick: (ev) => (ev.preventDefault(), watch(j.id).catch((err) => showError('job-error', err))) }, j.id.slice(0, 8))),
        h('td', {}, h('span', { class: `status ${j.status}` }, j.status)),
        h('td', {}, fmt.date(j.createdAt)),
        h('td', {}, j.error ? `${j.error.message} (${j.error.code})` : j.result && j.result.version ? `version ${j.result.version}` : ''),
      ),
    ),
    'No jobs yet.',
  );
}

await requireKey();
try {
  const ready = (await listAll('/v1/datasets')).filter((d) => d.status === 'ready');
  $('train-dataset').replaceChildren(...ready.map((d) => h('option', { value: d.id, selected: d.id === param('dataset') }, `${d.name} (${d.imageCount} images, ${d.labels.length} classes)`)));
  if (ready.length === 0) showError('train-error', 'No data set is ready yet: upload one under Data sets first.');
  const chosen = ready.find((d) => d.id === $('train-dataset').value);
  if (chosen && !$('train-name').value) $('train-name').value = chosen.name;
  $('train-dataset').addEventListener('change', () => {
    const d = ready.find((x) => x.id === $('train-dataset').value);
    if (d) $('train-name').value = d.name;
  });
  await refreshJobs();
} catch (err) {
  notice(String(err), 'error');
}
if (param('job')) watch(param('job')).catch((err) => notice(String(err), 'error'));
