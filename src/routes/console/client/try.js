// /console/try: one image (dropped, pasted or chosen) through one adapter or several (fan-out),
// with the top labels as bars, the version that answered and the timings.
import { api, listAll } from './api.js';
import { bars } from './charts.js';
import { $, h, fmt, onSubmit, showError, notice, param, requireKey, dropZone } from './ui.js';

let image; // Blob

function useImage(blob) {
  if (!blob) return;
  image = blob;
  const prev = $('try-preview');
  if (prev.src) URL.revokeObjectURL(prev.src);
  prev.src = URL.createObjectURL(blob);
  prev.hidden = false;
  showError('try-error', '');
}

$('try-file').addEventListener('change', (ev) => useImage(ev.target.files[0]));
dropZone('try-drop', 'try-file', (dt) => useImage(dt.files[0]));
document.addEventListener('paste', (ev) => {
  const item = [...(ev.clipboardData?.items || [])].find((i) => i.kind === 'file');
  if (item) useImage(item.getAsFile());
});

function picked() {
  return [...$('try-adapters').querySelectorAll('input:checked')].map((i) => i.value);
}

function selector(ref) {
  const v = $('try-version').value.trim();
  if (v === '') return ref;
  return /^\d+$/.test(v) ? { adapter: ref, version: Number(v) } : { adapter: ref, alias: v };
}

function card(r) {
  const t = r.timings;
  return h(
    'article',
    { class: 'result' },
    h('h3', {}, `${r.adapter.adapterName} `, h('small', {}, `v${r.adapter.version}`)),
    bars(r.predictions),
    h('p', { class: 'muted timings' }, `total ${fmt.num(t.totalMs, 1)} ms · queue ${fmt.num(t.queueMs, 1)} · load ${fmt.num(t.loadMs, 1)} · backbone ${fmt.num(t.prefixMs, 1)} · adapter ${fmt.num(t.adapterMs, 1)} · preprocess ${fmt.num(t.preprocessMs, 1)}`),
  );
}

onSubmit('try-form', async () => {
  showError('try-error', '');
  const refs = picked();
  if (refs.length === 0) return showError('try-error', 'Pick at least one adapter.');
  if (!image) return showError('try-error', 'Drop, paste or choose an image first.');
  const topK = $('try-topk').value || '5';
  const form = new FormData();
  try {
    let out;
    if (refs.length === 1) {
      form.append('images', image, 'image');
      form.append('topK', topK);
      const v = $('try-version').value.trim();
      if (v) form.append(/^\d+$/.test(v) ? 'version' : 'alias', v);
      out = await api('POST', `/v1/adapters/${encodeURIComponent(refs[0])}/classify`, { body: form });
    } else {
      form.append('adapters', JSON.stringify(refs.map(selector)));
      form.append('topK', topK);
      form.append('image', image, 'image');
      out = await api('POST', '/v1/classify/fan-out', { body: form });
    }
    $('try-results').replaceChildren(...out.results.map(card));
  } catch (err) {
    showError('try-error', err);
  }
});

await requireKey();
try {
  const adapters = (await listAll('/v1/adapters')).filter((a) => a.versionCount > 0);
  const want = param('adapter');
  $('try-adapters').replaceChildren(
    ...(adapters.length
      ? adapters.map((a, i) =>
          h('label', {}, h('input', { type: 'checkbox', value: a.id, checked: want ? a.id === want : i === 0 }), ` ${a.name} `, h('small', {}, `(${a.versionCount} version${a.versionCount === 1 ? '' : 's'})`)),
        )
      : [h('p', { class: 'muted' }, 'No adapter has a version yet: train one first.')]),
  );
} catch (err) {
  notice(String(err), 'error');
}
