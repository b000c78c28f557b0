// /console/datasets: upload with a real progress bar (XMLHttpRequest upload events: bytes sent,
// then processing), the list, one data set's per-class counts and problems, delete.
import { listAll, api, session, ApiError } from './api.js';
import { $, h, fillTable, fmt, onSubmit, showError, notice, param, setParam, confirmAction, requireKey, dropZone } from './ui.js';
import { zipFiles, filesFromDrop } from './zip.js';

let chosen; // { blob, name } ready to send

function choose(blob, label, suggestedName) {
  chosen = blob;
  $('upload-chosen').textContent = `${label} (${fmt.bytes(blob.size)})`;
  if (!$('upload-name').value && suggestedName) $('upload-name').value = suggestedName.replace(/\.(zip|jsonl|ndjson)$/i, '');
}

async function chooseFolder(files) {
  if (files.length === 0) return;
  $('upload-chosen').textContent = `Packing ${files.length} files…`;
  const blob = await zipFiles(files, (i, n) => {
    if (i % 50 === 0 || i === n) $('upload-chosen').textContent = `Packing ${i} of ${n} files…`;
  });
  const root = files[0].name.split('/')[0];
  choose(blob, `folder ${root}: ${files.length} files`, root);
}

$('upload-file').addEventListener('change', (ev) => {
  const f = ev.target.files[0];
  if (f) choose(f, f.name, f.name);
});
$('upload-folder').addEventListener('change', (ev) => {
  chooseFolder([...ev.target.files].map((file) => ({ name: file.webkitRelativePath || file.name, file }))).catch((err) => showError('upload-error', err));
});
dropZone('drop', 'upload-file', async (dt) => {
  try {
    const { single, files } = await filesFromDrop(dt);
    if (single) choose(single, single.name, single.name);
    else await chooseFolder(files);
  } catch (err) {
    showError('upload-error', err);
  }
});

/** The upload itself: XMLHttpRequest, because fetch reports no upload progress. */
function send(blob, name, policy) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const bar = $('upload-progress');
    const text = $('upload-progress-text');
    xhr.open('POST', `/v1/datasets?name=${encodeURIComponent(name)}&policy=${policy}`);
    xhr.setRequestHeader('authorization', `Bearer ${session.key()}`);
    xhr.setRequestHeader('content-type', blob.type === 'application/zip' || /\.zip$/i.test(blob.name || '') ? 'application/zip' : blob.type || 'application/octet-stream');
    bar.hidden = false;
    bar.value = 0;
    xhr.upload.onprogress = (ev) => {
      if (!ev.lengthComputable) return;
      bar.value = (100 * ev.loaded) / ev.total;
      text.textContent = `Sending: ${Math.round(bar.value)}% (${fmt.bytes(ev.loaded)} of ${fmt.bytes(ev.total)})`;
    };
    xhr.upload.onload = () => {
      bar.removeAttribute('value'); // indeterminate: the server is reading the images
      text.textContent = 'Sent. Processing the images…';
    };
    xhr.onload = () => {
      let body;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = undefined;
      }
      if (xhr.status === 201) return resolve(body);
      const e = body && body.error;
      reject(new ApiError(xhr.status, e ? e.code : `http_${xhr.status}`, e ? e.message : xhr.statusText));
    };
    xhr.onerror = () => reject(new Error('the connection failed during the upload'));
    xhr.send(blob);
  });
}

onSubmit('upload-form', async () => {
  showError('upload-error', '');
  if (!chosen) return showError('upload-error', 'Choose or drop a zip, a JSONL file or a folder first.');
  try {
    const ds = await send(chosen, $('upload-name').value.trim(), $('upload-policy').value);
    $('upload-progress').value = 100;
    $('upload-progress-text').textContent = `Done: ${ds.imageCount} images in ${ds.labels.length} classes${ds.problemCount ? `, ${ds.problemCount} problems` : ''}.`;
    chosen = undefined;
    $('upload-chosen').textContent = '';
    await refresh();
    show(ds.id);
  } catch (err) {
    $('upload-progress').hidden = true;
    $('upload-progress-text').textContent = '';
    showError('upload-error', err);
  }
});

async function refresh() {
  const items = await listAll('/v1/datasets');
  fillTable(
    'datasets-table',
    items.map((d) =>
      h(
        'tr',
        { dataset: { id: d.id } },
        h('td', {}, h('a', { href: `?dataset=${d.id}`, onclick: (ev) => (ev.preventDefault(), show(d.id)) }, d.name)),
        h('td', {}, h('span', { class: `status ${d.status}` }, d.status)),
        h('td', {}, d.imageCount),
        h('td', {}, d.labels.length),
        h('td', {}, d.problems.length),
        h('td', {}, fmt.date(d.createdAt)),
        h(
          'td',
          {},
          d.status === 'ready' ? h('a', { class: 'button small', href: `/console/training?dataset=${d.id}` }, 'Train') : '',
          ' ',
          h('button', { type: 'button', class: 'danger small', 'aria-label': `Delete data set ${d.name}`, onclick: () => remove(d) }, 'Delete'),
        ),
      ),
    ),
    'No data sets yet: upload one above.',
  );
}

async function remove(d) {
  if (!confirmAction(`Delete the data set '${d.name}'? Adapters trained on it keep working.`)) return;
  try {
    await api('DELETE', `/v1/datasets/${d.id}`);
    notice(`Deleted '${d.name}'.`);
    if (param('dataset') === d.id) {
      $('dataset-detail').hidden = true;
      setParam('dataset', null);
    }
    await refresh();
  } catch (err) {
    notice(String(err), 'error');
  }
}

async function show(id) {
  setParam('dataset', id);
  try {
    const d = await api('GET', `/v1/datasets/${encodeURIComponent(id)}`);
    $('dataset-detail').hidden = false;
    $('dataset-detail-title').textContent = `Data set: ${d.name}`;
    $('dataset-summary').textContent = `${d.status} · ${d.imageCount} images · ${d.labels.length} classes · ${fmt.bytes(d.byteSize)}${d.error ? ` · ${d.error}` : ''}`;
    fillTable(
      'dataset-classes',
      Object.entries(d.classes).map(([label, c]) => h('tr', {}, h('th', { scope: 'row' }, label), ...['train', 'val', 'test', 'unassigned', 'total'].map((k) => h('td', {}, c[k] ?? 0)))),
      'No classes.',
    );
    const problems = $('dataset-problems');
    problems.replaceChildren(...(d.problems.length ? d.problems.map((p) => h('li', {}, h('code', {}, p.code), ' ', p.file ? h('span', { class: 'mono' }, p.file) : '', ': ', p.message)) : [h('li', { class: 'muted' }, 'None: every file was read.')]));
    $('dataset-train').href = `/console/training?dataset=${d.id}`;
    $('dataset-train').hidden = d.status !== 'ready';
  } catch (err) {
    $('dataset-detail').hidden = true;
    notice(String(err), 'error');
  }
}

await requireKey();
await refresh().catch((err) => notice(String(err), 'error'));
if (param('dataset')) await show(param('dataset'));
