// /console/admin: tenants (create, usage, delete) and their keys, with the admin token.
import { api, listAll } from './api.js';
import { scopesOf, showOnce, keyRows } from './keys.js';
import { $, h, fillTable, fmt, onSubmit, showError, notice, param, setParam, confirmAction, requireAdmin } from './ui.js';

const admin = { admin: true };
let tenant;

async function refresh() {
  const tenants = await listAll('/v1/tenants', admin);
  fillTable(
    'tenants-table',
    tenants.map((t) =>
      h('tr', {}, h('td', {}, t.name), h('td', { class: 'mono' }, t.id), h('td', {}, fmt.date(t.createdAt)), h('td', {}, h('button', { type: 'button', class: 'small', onclick: () => open(t.id) }, 'Open'))),
    ),
    'No tenants yet.',
  );
}

async function open(id) {
  try {
    tenant = await api('GET', `/v1/tenants/${encodeURIComponent(id)}`, admin);
    setParam('tenant', tenant.id);
    $('tenant').hidden = false;
    $('tkey-created').hidden = true;
    $('tenant-title').textContent = `Tenant: ${tenant.name}`;
    $('tenant-usage').textContent = `${tenant.usage.datasets} data sets · ${tenant.usage.adapters} adapters · ${fmt.bytes(tenant.usage.bytes)} stored`;
    await keys();
  } catch (err) {
    $('tenant').hidden = true;
    notice(String(err), 'error');
  }
}

async function keys() {
  const items = await listAll(`/v1/tenants/${tenant.id}/keys`, admin);
  fillTable('tkeys-table', keyRows(items, revoke, false), 'No keys: create one so the tenant can sign in.');
}

async function revoke(k) {
  if (!confirmAction(`Revoke the key '${k.name || k.prefix}'?`)) return;
  try {
    await api('DELETE', `/v1/tenants/${tenant.id}/keys/${k.id}`, admin);
    await keys();
  } catch (err) {
    notice(String(err), 'error');
  }
}

onSubmit('tenant-form', async () => {
  showError('tenant-error', '');
  try {
    const t = await api('POST', '/v1/tenants', { ...admin, json: { name: $('tenant-name').value.trim() } });
    $('tenant-name').value = '';
    await refresh();
    await open(t.id);
  } catch (err) {
    showError('tenant-error', err);
  }
});

onSubmit('tkey-form', async () => {
  showError('tkey-error', '');
  try {
    const created = await api('POST', `/v1/tenants/${tenant.id}/keys`, { ...admin, json: { name: $('tkey-name').value.trim(), scopes: scopesOf('tkey-scope') } });
    showOnce('tkey', created.token);
    await keys();
  } catch (err) {
    showError('tkey-error', err);
  }
});

$('tenant-delete').addEventListener('click', async () => {
  if (!confirmAction(`Delete the tenant '${tenant.name}' with all its keys, data sets and adapters? This cannot be undone.`)) return;
  try {
    await api('DELETE', `/v1/tenants/${tenant.id}`, admin);
    notice(`Deleted '${tenant.name}'.`);
    $('tenant').hidden = true;
    setParam('tenant', null);
    await refresh();
  } catch (err) {
    notice(String(err), 'error');
  }
});

if (requireAdmin()) {
  await refresh().catch((err) => notice(String(err), 'error'));
  if (param('tenant')) await open(param('tenant'));
}
