// /console/adapters: the list; one adapter's versions with metrics, per-class P/R/F1, the
// confusion matrix (counts or row-normalised), aliases, the safetensors download, import.
import { api, listAll } from './api.js';
import { heatmap, lineChart } from './charts.js';
import { $, h, fillTable, fmt, onSubmit, showError, notice, param, setParam, requireKey } from './ui.js';

let current; // { adapter, versions, version }

async function refresh() {
  const items = await listAll('/v1/adapters');
  fillTable(
    'adapters-table',
    items.map((a) =>
      h(
        'tr',
        {},
        h('td', {}, h('a', { href: `?adapter=${a.id}`, onclick: (ev) => (ev.preventDefault(), open(a.id)) }, a.name)),
        h('td', {}, h('span', { class: `status ${a.status}` }, a.status)),
        h('td', {}, a.versionCount),
        h('td', {}, fmt.pct(a.latest?.metrics?.evaluation?.accuracy)),
        h('td', {}, a.aliases.map((x) => `${x.alias}→v${x.version}`).join(', ')),
        h('td', {}, h('a', { class: 'button small', href: `/console/try?adapter=${a.id}` }, 'Try')),
      ),
    ),
    'No adapters yet: train one under Training, or import a file below.',
  );
}

async function download(v) {
  try {
    const res = await api('GET', `/v1/adapters/${current.adapter.id}/versions/${v.version}/file`, { raw: true });
    const url = URL.createObjectURL(await res.blob());
    const a = h('a', { href: url, download: `${current.adapter.name}-v${v.version}.safetensors` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  } catch (err) {
    notice(String(err), 'error');
  }
}

async function open(ref, versionNumber) {
  try {
    const adapter = await api('GET', `/v1/adapters/${encodeURIComponent(ref)}`);
    const versions = await listAll(`/v1/adapters/${adapter.id}/versions`);
    current = { adapter, versions };
    setParam('adapter', adapter.id);
    $('adapter').hidden = false;
    $('adapter-title').textContent = `Adapter: ${adapter.name}`;
    $('adapter-summary').textContent = `${adapter.status} · ${adapter.versionCount} version${adapter.versionCount === 1 ? '' : 's'}${adapter.description ? ` · ${adapter.description}` : ''}${adapter.lastJob?.error ? ` · last job failed: ${adapter.lastJob.error.message}` : ''}`;
    fillTable(
      'versions-table',
      versions.map((v) =>
        h(
          'tr',
          {},
          h('td', {}, `v${v.version}`),
          h('td', {}, v.source),
          h('td', {}, fmt.pct(v.metrics?.evaluation?.accuracy)),
          h('td', {}, fmt.num(v.metrics?.evaluation?.macroF1)),
          h('td', {}, fmt.bytes(v.byteSize)),
          h('td', {}, fmt.date(v.createdAt)),
          h(
            'td',
            {},
            h('button', { type: 'button', class: 'small', onclick: () => showVersion(v) }, 'Metrics'),
            ' ',
            h('button', { type: 'button', class: 'small secondary', 'aria-label': `Download version ${v.version} (safetensors)`, onclick: () => download(v) }, 'Download'),
          ),
        ),
      ),
      'No versions yet (training may still be running).',
    );
    showAliases();
    const pick = versions.find((v) => v.version === Number(versionNumber)) || versions[versions.length - 1];
    if (pick) showVersion(pick);
    else $('metrics').hidden = true;
  } catch (err) {
    $('adapter').hidden = true;
    $('metrics').hidden = true;
    notice(String(err), 'error');
  }
}

function showAliases() {
  const { adapter, versions } = current;
  $('aliases').replaceChildren(
    ...adapter.aliases.map((a) =>
      h('li', {}, h('code', {}, a.alias), ` → v${a.version} `, h('button', { type: 'button', class: 'small secondary', 'aria-label': `Remove alias ${a.alias}`, onclick: () => removeAlias(a.alias) }, 'Remove')),
    ),
  );
  $('alias-version').replaceChildren(...versions.map((v) => h('option', { value: v.version }, `v${v.version}`)).reverse());
}

async function removeAlias(alias) {
  try {
    await api('DELETE', `/v1/adapters/${current.adapter.id}/aliases/${encodeURIComponent(alias)}`);
    await open(current.adapter.id, current.version?.version);
  } catch (err) {
    showError('adapter-error', err);
  }
}

onSubmit('alias-form', async () => {
  showError('adapter-error', '');
  try {
    await api('PUT', `/v1/adapters/${current.adapter.id}/aliases/${encodeURIComponent($('alias-name').value.trim())}`, { json: { version: Number($('alias-version').value) } });
    $('alias-name').value = '';
    await open(current.adapter.id, current.version?.version);
    await refresh();
  } catch (err) {
    showError('adapter-error', err);
  }
});

function drawConfusion() {
  const ev = current.version?.metrics?.evaluation;
  if (!ev?.confusionMatrix) return $('confusion').replaceChildren(h('p', { class: 'muted' }, 'No confusion matrix for this version (imported files carry none).'));
  heatmap($('confusion'), ev.confusionMatrix, current.version.labels, $('cm-rows').checked ? 'rows' : 'counts');
}
for (const id of ['cm-counts', 'cm-rows']) $(id).addEventListener('change', drawConfusion);

function showVersion(v) {
  current.version = v;
  setParam('version', v.version);
  const m = v.metrics || {};
  const ev = m.evaluation;
  $('metrics').hidden = false;
  $('metrics-title').textContent = `Metrics: ${current.adapter.name} v${v.version}`;
  $('metrics-summary').textContent = ev
    ? `${ev.count} ${ev.split} images · accuracy ${fmt.pct(ev.accuracy)} · macro F1 ${fmt.num(ev.macroF1)} · loss ${fmt.num(ev.loss)}${ev.split === 'train' ? ' (training images: too few for a validation split)' : ''}${m.epochsRun ? ` · ${m.epochsRun} epochs` : ''}`
    : 'This version carries no evaluation.';
  const curve = Array.isArray(m.lossCurve) ? m.lossCurve : [];
  const pts = (k) => curve.filter((p) => typeof p[k] === 'number').map((p) => [p.epoch, p[k]]);
  if (curve.length) {
    lineChart($('metrics-curve'), [
      { name: 'training loss', points: pts('trainLoss') },
      { name: 'validation loss', points: pts('valLoss') },
    ].filter((s) => s.points.length), { id: 'curve', label: 'Training curve', xMax: curve.length });
  } else $('metrics-curve').replaceChildren(h('p', { class: 'muted' }, 'No training curve (imported).'));
  fillTable(
    'prf-table',
    (ev?.perClass || []).map((c) => h('tr', {}, h('th', { scope: 'row' }, c.label), h('td', {}, fmt.num(c.precision)), h('td', {}, fmt.num(c.recall)), h('td', {}, fmt.num(c.f1)), h('td', {}, c.support))),
    'No per-class scores.',
  );
  drawConfusion();
}

onSubmit('import-form', async () => {
  showError('import-error', '');
  const file = $('import-file').files[0];
  if (!file) return showError('import-error', 'Choose a .safetensors file.');
  try {
    const out = await api('POST', `/v1/adapters/import?name=${encodeURIComponent($('import-name').value.trim())}`, { body: file, headers: { 'content-type': 'application/octet-stream' } });
    notice(`Imported '${out.adapter.name}' as version ${out.version.version}.`);
    await refresh();
    await open(out.adapter.id, out.version.version);
  } catch (err) {
    showError('import-error', err);
  }
});

await requireKey();
await refresh().catch((err) => notice(String(err), 'error'));
if (param('adapter')) await open(param('adapter'), param('version'));
