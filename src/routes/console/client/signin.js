// /console: check the key against /v1/me (or the admin token against /v1/tenants) before keeping it.
import { api, session } from './api.js';
import { $, onSubmit, showError } from './ui.js';

onSubmit('signin-form', async () => {
  showError('signin-error', '');
  const token = $('signin-key').value.trim();
  session.clear();
  session.setKey(token);
  try {
    const me = await api('GET', '/v1/me');
    $('signin-key').value = '';
    location.assign(me.scopes.includes('train') ? '/console/datasets' : me.scopes.includes('classify') ? '/console/try' : '/console/keys');
  } catch (err) {
    session.clear();
    showError('signin-error', err.status === 401 ? 'That key was not accepted: unknown, revoked or mistyped (unauthenticated).' : err);
  }
});

onSubmit('admin-form', async () => {
  showError('admin-error', '');
  const token = $('admin-token').value.trim();
  session.clear();
  session.setAdmin(token);
  try {
    await api('GET', '/v1/tenants?limit=1', { admin: true });
    $('admin-token').value = '';
    location.assign('/console/admin');
  } catch (err) {
    session.clear();
    showError('admin-error', err);
  }
});

if (session.key() || session.admin()) {
  $('who').textContent = session.admin() ? 'Signed in as administrator' : 'Signed in with an API key';
}
