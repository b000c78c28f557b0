/**
 * The console's server-rendered pages through app.request: every page answers HTML under the
 * strict CSP with no inline script or style, every field is labelled, credentials never come back
 * in a page or a log line, assets are a fixed set, and the client calls only documented /v1 routes.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONSOLE_CSP } from '../../src/routes/console/router.js';
import { parseKey } from '../../src/services/auth.js';
import { startHarness, type Harness } from '../routes/harness.js';

const PAGES = ['/console', '/console/datasets', '/console/training', '/console/adapters', '/console/try', '/console/keys', '/console/admin'];
const CLIENT = new URL('../../src/routes/console/client/', import.meta.url);

describe('console pages', () => {
  let h: Harness;
  const lines: string[] = [];
  let t: { id: string; token: string };

  beforeAll(async () => {
    const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(s) });
    h = await startHarness({ log });
    t = await h.tenant('console');
  });
  afterAll(async () => {
    await h?.close();
  });

  it.each(PAGES)('%s: HTML under the CSP, no inline script or style, every field labelled', async (path) => {
    const res = await h.app.request(path);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    expect(res.headers.get('content-security-policy')).toBe(CONSOLE_CSP);
    expect(CONSOLE_CSP).toContain("script-src 'self'");
    expect(CONSOLE_CSP).not.toMatch(/unsafe-inline|unsafe-eval|https?:/);
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('cache-control')).toBe('no-store');
    const html = await res.text();
    expect(html.startsWith('<!doctype html>')).toBe(true);
    const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
    expect(scripts.length).toBe(1);
    for (const [, attrs, body] of scripts) {
      expect(body.trim()).toBe('');
      expect(attrs).toMatch(/src="\/console\/assets\/[a-z-]+\.js"/);
    }
    expect(html).not.toMatch(/\sstyle=|<style|\son[a-z]+=|https?:\/\//);
    // Every visible input, select and textarea has a <label for>, or sits inside a <label>.
    const ids = [...html.matchAll(/<(?:input|select|textarea)\b[^>]*\bid="([^"]+)"/g)].map((m) => m[1]);
    const wrapped = (id: string) => {
      const at = html.indexOf(`id="${id}"`);
      return html.lastIndexOf('<label', at) > html.lastIndexOf('</label>', at);
    };
    for (const id of ids) expect(html.includes(`for="${id}"`) || wrapped(id), `label for #${id}`).toBe(true);
    // Fields carry no name: a form submitted without the script sends nothing (no key in a URL).
    expect(html).not.toMatch(/<input[^>]*\bname="(?!cm-mode)/);
    const asset = /src="(\/console\/assets\/[a-z-]+\.js)"/.exec(html)![1];
    const js = await h.app.request(asset);
    expect(js.status).toBe(200);
    expect(js.headers.get('content-type')).toMatch(/^text\/javascript/);
  });

  it('never echoes a key: not in the page, not in the log', async () => {
    const res = await h.app.request('/console/keys?x=1', { headers: { authorization: `Bearer ${t.token}` } });
    expect(res.status).toBe(200);
    expect(await res.text()).not.toContain(t.token);
    const secret = parseKey(t.token)!.secret; // the whole secret: base64url may itself hold '_'
    expect(lines.join('\n')).not.toContain(secret);
    expect(lines.some((l) => l.includes('"route":"/console/keys"'))).toBe(true);
  });

  it('serves a fixed set of assets; anything else is the API’s 404', async () => {
    const css = await h.app.request('/console/assets/console.css');
    expect(css.status).toBe(200);
    expect(css.headers.get('content-type')).toMatch(/^text\/css/);
    for (const bad of ['/console/assets/nope.js', '/console/assets/..%2Frouter.tsx', '/console/assets/%2e%2e%2flayout.tsx', '/console/nope']) {
      const r = await h.app.request(bad);
      expect(r.status, bad).toBe(404);
      expect(((await r.json()) as { error: { code: string } }).error.code).toBe('not_found');
    }
  });

  it('the client keeps keys in sessionStorage, writes no HTML from strings, and calls only documented /v1 routes', async () => {
    const doc = (await (await h.app.request('/openapi.json')).json()) as { paths: Record<string, Record<string, unknown>> };
    const documented = Object.keys(doc.paths).map((p) => new RegExp(`^${p.replace(/\{[^}]+\}/g, '[^/?]+')}(\\?.*)?$`));
    const calls: string[] = [];
    for (const name of readdirSync(CLIENT).filter((n) => n.endsWith('.js'))) {
      const text = readFileSync(new URL(name, CLIENT), 'utf8');
      expect(text, name).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write|localStorage|eval\(|new Function/);
      for (const m of text.matchAll(/[`'](\/v1\/[^`']*)[`']/g)) calls.push(m[1].replace(/\$\{[^}]+\}/g, 'X'));
    }
    expect(calls.length).toBeGreaterThan(15);
    for (const call of calls) expect(documented.some((re) => re.test(call)), call).toBe(true);
  });
});
