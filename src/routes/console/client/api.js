// The console's only way to the server: the public /v1 API with the key from sessionStorage as
// the bearer token. Keys never go into a URL, a query string or the page's HTML.

const KEY = 'dtl.console.key';
const ADMIN = 'dtl.console.admin';

export const session = {
  key: () => sessionStorage.getItem(KEY),
  admin: () => sessionStorage.getItem(ADMIN),
  setKey: (token) => sessionStorage.setItem(KEY, token),
  setAdmin: (token) => sessionStorage.setItem(ADMIN, token),
  clear: () => {
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(ADMIN);
  },
};

/** An error answer of the API: its stable code and message, as the server wrote them. */
export class ApiError extends Error {
  constructor(status, code, message, requestId) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
  }
  toString() {
    return `${this.message} (${this.code})`;
  }
}

async function errorOf(res) {
  let body;
  try {
    body = await res.json();
  } catch {
    body = undefined;
  }
  const e = body && body.error;
  return new ApiError(res.status, e ? e.code : `http_${res.status}`, e ? e.message : `${res.status} ${res.statusText}`, e ? e.requestId : undefined);
}

function headersFor(opts) {
  const token = opts.admin ? session.admin() : session.key();
  const headers = { ...(opts.headers || {}) };
  if (token) headers.authorization = `Bearer ${token}`;
  return headers;
}

/** One call: JSON in (opts.json) or any body (opts.body); JSON, text or nothing out. */
export async function api(method, path, opts = {}) {
  const headers = headersFor(opts);
  let body = opts.body;
  if (opts.json !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(opts.json);
  }
  const res = await fetch(path, { method, headers, body, signal: opts.signal, cache: 'no-store', referrerPolicy: 'no-referrer' });
  if (!res.ok) throw await errorOf(res);
  if (opts.raw) return res;
  if (res.status === 204) return undefined;
  const type = res.headers.get('content-type') || '';
  return type.includes('json') ? res.json() : res.text();
}

/**
 * Every item of a list endpoint: follows `nextCursor` while the server gives one (cursor
 * pagination), and stops after the first page when it gives none (an older server).
 */
export async function listAll(path, opts = {}) {
  const items = [];
  const sep = path.includes('?') ? '&' : '?';
  let url = `${path}${sep}limit=${opts.limit || 100}`;
  for (let pages = 0; pages < (opts.maxPages || 50); pages++) {
    const page = await api('GET', url, opts);
    items.push(...(page.items || []));
    if (!page.nextCursor) break;
    url = `${path}${sep}limit=${opts.limit || 100}&cursor=${encodeURIComponent(page.nextCursor)}`;
  }
  return items;
}

/**
 * A job's Server-Sent Events through fetch (EventSource cannot send an Authorization header),
 * resumed from the last event id when the connection drops. Resolves when the stream ends.
 */
export async function streamEvents(path, onEvent, signal) {
  let lastId;
  for (let tries = 0; tries < 20 && !signal.aborted; tries++) {
    try {
      const headers = headersFor({});
      if (lastId !== undefined) headers['last-event-id'] = lastId;
      const res = await fetch(path, { headers, signal, cache: 'no-store' });
      if (!res.ok) throw await errorOf(res);
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let cut;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          const ev = { event: 'message', data: '' };
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) continue;
            const i = line.indexOf(':');
            const field = i < 0 ? line : line.slice(0, i);
            const val = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
            if (field === 'event') ev.event = val;
            else if (field === 'data') ev.data += (ev.data ? '\n' : '') + val;
            else if (field === 'id') lastId = ev.id = val;
          }
          if (ev.data === '') continue;
          onEvent(ev.event, JSON.parse(ev.data));
          if (ev.event === 'end' || ev.event === 'error') return;
        }
      }
    } catch (err) {
      if (signal.aborted || err instanceof ApiError) throw err;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}
