// /console/keys: the tenant's keys. A new key's token is shown once, with a copy button.
import { api, listAll, session } from './api.js';
import { $, h, fillTable, fmt, onSubmit, showError, notice, confirmAction, requireKey } from './ui.js';

export function scopesOf(prefix) {
  return ['classify', 'train', 'manage'].filter((s) => $(`${prefix}-${s}`).checked);
}

/** Show a token once; the copy button uses the clipboard API, else selects it for Ctrl+C. */
export function showOnce(prefix, token) {
  $(`${prefix}-created`).hidden = false;
  const input = $(`${prefix}-token`);
  input.value = token;
  input.focus();
  input.select();
  $(`${prefix}-copy`).onclick = async () => {
    try {
      await navigator.clipboard.writeText(input.value);
      $(`${prefix}-copy`).textContent = 'Copied';
    } catch {
      input.select();
      $(`${prefix}-copy`).textContent = 'Press Ctrl+C';
    }
  };
}

export function keyRows(keys, revoke, withDates) {
  return keys.map((k) =>
    h(
      'tr',
      { dataset: { id: k.id } },
      h('td', {}, k.name || '–'),
      h('td', { class: 'mono' }, k.prefix),
      h('td', {}, k.scopes.join(', ')),
      withDates ? h('td', {}, fmt.date(k.createdAt)) : null,
      withDates ? h('td', {}, fmt.date(k.lastUsedAt)) : null,
      h('td', {}, k.revokedAt ? h('span', { class: 'status failed' }, 'revoked') : h('span', { class: 'status ready' }, 'active')),
      h('td', {}, k.revokedAt ? '' : h('button', { type: 'button', class: 'danger small', 'aria-label': `Revoke key ${k.name || k.prefix}`, onclick: () => revoke(k) }, 'Revoke')),
    ),
  );
}

if (document.body.dataset.page === 'keys') {
  const me = await requireKey();
  const refresh = async () => {
    const keys = await listAll('/v1/keys');
    fillTable('keys-table', keyRows(keys, revoke, true), 'No keys.');
  };
  const revoke = async (k) => {
    const self = k.id === me.keyId;
    if (!confirmAction(self ? 'Revoke the key you are signed in with? You will be signed out.' : `Revoke the key '${k.name || k.prefix}'? Clients using it stop working at once.`)) return;
    try {
      await api('DELETE', `/v1/keys/${k.id}`);
      if (self) {
        session.clear();
        return location.assign('/console');
      }
      notice(`Revoked '${k.name || k.prefix}'.`);
      await refresh();
    } catch (err) {
      notice(String(err), 'error');
    }
  };
  onSubmit('key-form', async () => {
    showError('key-error', '');
    try {
      const created = await api('POST', '/v1/keys', { json: { name: $('key-name').value.trim(), scopes: scopesOf('key-scope') } });
      showOnce('key', created.token);
      $('key-name').value = '';
      await refresh();
    } catch (err) {
      showError('key-error', err);
    }
  });
  if (!me.scopes.includes('manage')) notice("This key lacks the 'manage' scope: it cannot list or create keys.", 'error');
  else await refresh().catch((err) => notice(String(err), 'error'));
}
