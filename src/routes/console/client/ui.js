// Small DOM helpers shared by the pages: element builders (text is always set as text, never as
// HTML), notices, formatting, and the sign-in guard every page but /console starts with.
import { api, session } from './api.js';

export const $ = (id) => document.getElementById(id);

/** h('td', {class: 'x', onclick}, 'text', child): attributes, listeners (on*) and children. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== undefined && c !== null && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

/** Replace a table body's rows; an empty list shows one row saying so. */
export function fillTable(tableId, rows, empty) {
  const tbody = $(tableId).querySelector('tbody');
  const cols = $(tableId).querySelectorAll('thead th').length;
  tbody.replaceChildren(...(rows.length > 0 ? rows : [h('tr', {}, h('td', { colspan: cols, class: 'muted' }, empty))]));
}

export function notice(text, kind = 'info') {
  const el = $('notice');
  el.textContent = text;
  el.className = `notice ${kind}`;
}

/** Show an error where the user acted: the API's message and code, or the exception's text. */
export function showError(id, err) {
  const el = $(id);
  if (!el) return notice(String(err), 'error');
  el.textContent = err ? String(err instanceof Error && !err.code ? err.message : err) : '';
}

export const fmt = {
  date: (iso) => (iso ? new Date(iso).toLocaleString() : '–'),
  pct: (x) => (typeof x === 'number' ? `${(x * 100).toFixed(1)}%` : '–'),
  num: (x, d = 3) => (typeof x === 'number' ? x.toFixed(d) : '–'),
  bytes: (n) => (n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KB` : `${(n / 1048576).toFixed(1)} MB`),
  seconds: (s) => (typeof s !== 'number' || !isFinite(s) ? '–' : s < 60 ? `${Math.round(s)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`),
};

/** A form's submit handler that never lets the browser submit it (no field would leave anyway: no names). */
export function onSubmit(formId, handler) {
  $(formId).addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const button = ev.submitter || $(formId).querySelector('button[type=submit]');
    if (button) button.disabled = true;
    try {
      await handler(ev);
    } finally {
      if (button) button.disabled = false;
    }
  });
}

export const param = (name) => new URLSearchParams(location.search).get(name);

/** Put a selection into the address bar (ids only, never a key), so a reload shows the same thing. */
export function setParam(name, value) {
  const url = new URL(location.href);
  if (value === undefined || value === null) url.searchParams.delete(name);
  else url.searchParams.set(name, value);
  history.replaceState(null, '', url);
}

/** Confirm a destructive action; tests and keyboard users get the browser's own dialog. */
export const confirmAction = (text) => window.confirm(text);

function wireHeader(label) {
  $('who').textContent = label;
  const out = $('signout');
  out.hidden = false;
  out.addEventListener('click', () => {
    session.clear();
    location.assign('/console');
  });
}

/**
 * Every tenant page starts here: without a key, back to sign-in; with one, who it is. Resolves
 * to the key's /v1/me (tenant id, scopes).
 */
export async function requireKey() {
  if (!session.key()) {
    location.replace('/console');
    return new Promise(() => {});
  }
  try {
    const me = await api('GET', '/v1/me');
    wireHeader(`Tenant ${me.tenantId.slice(0, 8)} · key ${me.prefix} (${me.scopes.join(', ')})`);
    return me;
  } catch (err) {
    if (err.status === 401) {
      session.clear();
      location.replace('/console');
      return new Promise(() => {});
    }
    throw err;
  }
}

export function requireAdmin() {
  if (!session.admin()) {
    notice('Sign in as administrator first (on the sign-in page).', 'error');
    return false;
  }
  wireHeader('Administrator');
  return true;
}

/** A drop zone: drop, click/Enter/Space to open the file chooser. */
export function dropZone(zoneId, inputId, onItems) {
  const zone = $(zoneId);
  zone.addEventListener('dragover', (ev) => {
    ev.preventDefault();
    zone.classList.add('over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (ev) => {
    ev.preventDefault();
    zone.classList.remove('over');
    onItems(ev.dataTransfer);
  });
  zone.addEventListener('keydown', (ev) => {
    if (ev.target === zone && (ev.key === 'Enter' || ev.key === ' ')) {
      ev.preventDefault();
      $(inputId).click();
    }
  });
}
