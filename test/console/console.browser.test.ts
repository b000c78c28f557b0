/**
 * The console in a real headless Chromium against a started server (real port, PGlite, disk
 * store, the bundled backbone): the administrator creates a tenant and its key; a wrong key is
 * refused; the tenant uploads a data set (progress bar), trains it while the loss chart grows,
 * reads the confusion matrix, points an alias, downloads the adapter and imports it, classifies
 * an image with one adapter and with both side by side (and is told a text file is none),
 * creates and revokes a key; another tenant sees the API's 404; the pages fit 390 px.
 * No request URL ever carries a credential. CONSOLE_SCREENSHOTS=dir writes each page at 1280
 * and 390 px there (docs/console/ holds the committed ones).
 */
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/server.js';
import { parseKey } from '../../src/services/auth.js';
import { makeShapesDataset, zipClassFolders, type DatasetImage } from '../helpers/datasets.js';
import { makeTempDir } from '../helpers/db.js';
import { ROOT } from '../server/spawn.js';
import { launchChromium, type Browser } from './browser.js';

const ADMIN = 'console-admin-token-0123456789';
const SHOTS = process.env.CONSOLE_SCREENSHOTS;
/** expect.poll with room for a busy 2-core machine (its default gives up after 1 s). */
const poll = <T>(fn: () => T | Promise<T>) => expect.poll(fn, { timeout: 20_000 });

describe('console in headless Chromium', () => {
  let server: RunningServer;
  let dir: string;
  let browser: Browser;
  let page: Page;
  let images: DatasetImage[];
  let token = '';
  const urls: string[] = [];
  const pageErrors: string[] = [];
  const ids: { dataset?: string; adapter?: string; jobPage?: string } = {};

  beforeAll(async () => {
    dir = await makeTempDir('dtl-console');
    [server, browser, images] = await Promise.all([
      startServer({
        DATA_DIR: dir,
        BACKBONE: path.join(ROOT, 'backbones/default'),
        PORT: '0',
        HOST: '127.0.0.1',
        ADMIN_TOKEN: ADMIN,
        TFJS_BACKEND: 'wasm',
        // 'error': the job this test makes fail is logged at warn.
        LOG_LEVEL: 'error',
        // A running job hears of its cancel at the next heartbeat (a third of this).
        JOB_LEASE_MS: '6000',
      }),
      launchChromium(),
      makeShapesDataset({ classes: 3, perClass: 12, size: 28, seed: 5 }),
    ]);
    page = await browser.context.newPage();
    page.on('request', (r) => urls.push(r.url()));
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    page.on('dialog', (d) => void d.accept());
    if (SHOTS) await mkdir(SHOTS, { recursive: true });
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const go = (p: string) => page.goto(`${server.url}${p}`);
  const shot = async (name: string) => {
    if (!SHOTS) return;
    for (const width of [1280, 390]) {
      await page.setViewportSize({ width, height: 900 });
      await page.screenshot({ path: path.join(SHOTS, `${name}-${width}.png`), fullPage: true });
    }
    await page.setViewportSize({ width: 1280, height: 900 });
  };

  it('admin: creates a tenant and a key shown once', async () => {
    await go('/console');
    await shot('signin');
    await page.fill('#admin-token', ADMIN);
    await page.click('#admin-form button[type=submit]');
    await page.waitForURL(/\/console\/admin$/);
    await page.fill('#tenant-name', 'acme');
    await page.click('#tenant-form button[type=submit]');
    await page.waitForSelector('#tenant:not([hidden])');
    await page.fill('#tkey-name', 'console');
    await page.check('#tkey-scope-manage');
    await page.click('#tkey-form button[type=submit]');
    await page.waitForSelector('#tkey-created:not([hidden])');
    token = await page.inputValue('#tkey-token');
    expect(token).toMatch(/^dtl_[A-Za-z0-9]+_/);
    await poll(() => page.locator('#tkeys-table tbody tr').count()).toBe(1);
    await shot('admin');
  });

  it('refuses a wrong key with a clear message, then signs in', async () => {
    await page.click('#signout');
    await page.waitForURL(/\/console$/);
    await page.fill('#signin-key', 'dtl_nothing_wrong');
    await page.click('#signin-form button[type=submit]');
    await poll(() => page.textContent('#signin-error')).toContain('not accepted');
    await page.fill('#signin-key', token);
    await page.click('#signin-form button[type=submit]');
    await page.waitForURL(/\/console\/datasets$/);
    await poll(() => page.textContent('#who')).toContain('train');
  });

  it('explains an upload that holds no images, in the API’s words', async () => {
    const junk = Buffer.from('these are notes, not images\n');
    const api = await fetch(`${server.url}/v1/datasets?name=junk-api`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: junk });
    expect(api.status).toBeGreaterThanOrEqual(400);
    const { error } = (await api.json()) as { error: { code: string; message: string } };
    await page.setInputFiles('#upload-file', { name: 'notes.txt', mimeType: 'text/plain', buffer: junk });
    await page.fill('#upload-name', 'junk');
    await page.click('#upload-submit');
    await poll(() => page.textContent('#upload-error')).toBe(`${error.message.replace('junk-api', 'junk')} (${error.code})`);
    expect(await page.isHidden('#upload-progress')).toBe(true);
    await page.fill('#upload-name', '');
  });

  it('uploads a data set with a progress bar, shows per-class counts', async () => {
    // In the page (as source text: the test itself is compiled without the DOM's types).
    await page.evaluate(`{
      const seen = (window.seen = []);
      const el = document.getElementById('upload-progress-text');
      new MutationObserver(() => seen.push(el.textContent)).observe(el, { childList: true, characterData: true, subtree: true });
    }`);
    await page.setInputFiles('#upload-file', { name: 'shapes.zip', mimeType: 'application/zip', buffer: await zipClassFolders(images) });
    await page.click('#upload-submit');
    await expect.poll(() => page.textContent('#upload-progress-text'), { timeout: 30_000 }).toContain('Done: 36 images in 3 classes');
    const seen = await page.evaluate<string[]>('window.seen');
    expect(seen.some((s) => s.startsWith('Sending:'))).toBe(true);
    expect(seen.some((s) => s.startsWith('Sent. Processing'))).toBe(true);
    expect(await page.getAttribute('#upload-progress', 'value')).toBe('100');
    await poll(() => page.locator('#dataset-classes tbody tr').count()).toBe(3);
    expect(await page.locator('#datasets-table tbody tr:has-text("shapes")').count()).toBe(1);
    ids.dataset = new URL(page.url()).searchParams.get('dataset') ?? undefined;
    expect(ids.dataset).toMatch(/^[0-9a-f-]{36}$/);
    await shot('datasets');
  });

  it('trains to completion while the loss chart grows, with the ETA', async () => {
    await page.click('#dataset-train');
    await page.waitForURL(/\/console\/training\?dataset=/);
    await poll(() => page.inputValue('#train-name')).toBe('shapes');
    await page.click('details summary');
    await page.fill('#hp-epochs', '6');
    await page.fill('#hp-lr', '0.01');
    await page.selectOption('#hp-variant', 'dtl');
    await page.fill('#hp-batch', '12');
    await page.fill('#hp-warmup', '1');
    await page.fill('#hp-patience', '0');
    await page.click('#train-form button[type=submit]');
    const points = async () => Number((await page.locator('#loss-0').getAttribute('data-points', { timeout: 1000 }).catch(() => '0')) ?? 0);
    const dLength = async () => ((await page.locator('#loss-0').getAttribute('d')) ?? '').length;
    await expect.poll(points, { timeout: 60_000, interval: 100 }).toBeGreaterThanOrEqual(1);
    const early = { points: await points(), d: await dLength() };
    expect(await page.textContent('#job-eta')).toMatch(/s|done/);
    await expect.poll(() => page.textContent('#job-status'), { timeout: 60_000 }).toBe('succeeded');
    const late = { points: await points(), d: await dLength() };
    // Every epoch the job planned (warm-up included) is a point.
    expect(late.points).toBe(Number(/of (\d+)/.exec((await page.textContent('#job-epoch')) ?? '')?.[1]));
    expect(late.points).toBeGreaterThanOrEqual(6);
    expect(late.points).toBeGreaterThan(early.points);
    expect(late.d).toBeGreaterThan(early.d);
    expect(await page.locator('#acc-0').getAttribute('data-points')).toBe(String(late.points));
    expect(await page.textContent('#job-done')).toContain('Published version 1');
    ids.jobPage = page.url();
    await shot('training');
  });

  it('cancels a running job; a job that fails shows why', async () => {
    const call = (method: string, p: string, body?: RequestInit['body'], type?: string) =>
      fetch(`${server.url}${p}`, { method, headers: { authorization: `Bearer ${token}`, ...(type ? { 'content-type': type } : {}) }, body });
    // A data set deleted while its job waits behind the long one: that job fails when it starts.
    const tiny = (await (await call('POST', '/v1/datasets?name=tiny', await zipClassFolders([...images.slice(0, 4), ...images.slice(12, 16)]), 'application/zip')).json()) as { id: string };
    await go(`/console/training?dataset=${ids.dataset}`);
    await poll(() => page.inputValue('#train-name')).toBe('shapes');
    await page.fill('#train-name', 'long');
    await page.click('details summary');
    await page.fill('#hp-epochs', '500');
    await page.fill('#hp-lr', '0.01');
    await page.selectOption('#hp-variant', 'dtl');
    await page.click('#train-form button[type=submit]');
    await poll(() => page.textContent('#job-status')).toBe('running');
    const doomed = await call('POST', '/v1/adapters', JSON.stringify({ datasetId: tiny.id, name: 'doomed' }), 'application/json');
    expect(doomed.status).toBe(202);
    const doomedJob = ((await doomed.json()) as { job: { id: string } }).job.id;
    expect((await call('DELETE', `/v1/datasets/${tiny.id}`)).status).toBe(204);
    await page.click('#job-cancel');
    await expect.poll(() => page.textContent('#job-status'), { timeout: 30_000 }).toBe('cancelled');
    await poll(() => page.isHidden('#job-cancel')).toBe(true);
    expect(await page.textContent('#job-done')).toBe('');
    await go(`/console/training?job=${doomedJob}`);
    await expect.poll(() => page.textContent('#job-status'), { timeout: 30_000 }).toBe('failed');
    await poll(() => page.textContent('#job-error')).toMatch(/^Training failed: .+ \(not_found\)$/);
    await page.goto(ids.jobPage!);
    await poll(() => page.textContent('#job-status')).toBe('succeeded');
  });

  it('shows the version’s metrics, the confusion matrix (counts and row-normalised), and points an alias', async () => {
    await page.click('#job-done a:has-text("Open its metrics")');
    await page.waitForURL(/\/console\/adapters\?adapter=/);
    ids.adapter = new URL(page.url()).searchParams.get('adapter') ?? undefined;
    await page.waitForSelector('#confusion-svg');
    expect(await page.locator('#confusion-svg .cm-cell').count()).toBe(9);
    expect(await page.locator('#prf-table tbody tr').count()).toBe(3);
    const counts = await page.locator('#confusion-svg .cm-cell text').allTextContents();
    expect(counts.every((t) => /^\d+$/.test(t))).toBe(true);
    await page.check('#cm-rows');
    const rows = await page.locator('#confusion-svg .cm-cell text').allTextContents();
    expect(rows.every((t) => /^\d+%$|^–$/.test(t))).toBe(true);
    await page.fill('#alias-name', 'prod');
    await page.click('#alias-form button[type=submit]');
    await poll(() => page.textContent('#aliases')).toContain('prod → v1');
    await shot('adapters');
  });

  it('downloads the safetensors file and imports it as another adapter', async () => {
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#versions-table button:has-text("Download")')]);
    expect(download.suggestedFilename()).toBe('shapes-v1.safetensors');
    const file = path.join(dir, 'shapes-v1.safetensors');
    await download.saveAs(file);
    await page.fill('#import-name', 'shapes-copy');
    await page.setInputFiles('#import-file', file);
    await page.click('#import-form button[type=submit]');
    await poll(() => page.textContent('#notice')).toBe("Imported 'shapes-copy' as version 1.");
    await poll(() => page.textContent('#adapter-title')).toBe('Adapter: shapes-copy');
    // shapes, long (cancelled) and doomed (failed), neither with a version, and shapes-copy.
    expect(await page.locator('#adapters-table tbody tr').count()).toBe(4);
  });

  it('classifies an image (top-k bars, version, timings) and explains a non-image', async () => {
    await go(`/console/try?adapter=${ids.adapter}`);
    await page.waitForSelector('#try-adapters input:checked');
    await page.setInputFiles('#try-file', { name: 'x.png', mimeType: 'image/png', buffer: images[0].data });
    await page.click('#try-form button[type=submit]');
    await page.waitForSelector('.result');
    expect(await page.locator('.result .bars li').count()).toBe(3);
    expect(await page.textContent('.result h3')).toContain('v1');
    expect(await page.textContent('.result .timings')).toMatch(/total \d+(\.\d)? ms/);
    // Both adapters side by side (fan-out): the imported copy answers exactly as the original.
    await page.check('#try-adapters label:has-text("shapes-copy") input');
    await page.click('#try-form button[type=submit]');
    await poll(() => page.locator('.result').count()).toBe(2);
    const answers = await page.locator('.result .bars').allTextContents();
    expect(answers[0]).toBe(answers[1]);
    await shot('try');
    await page.setInputFiles('#try-file', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('not an image at all') });
    await page.click('#try-form button[type=submit]');
    await poll(() => page.textContent('#try-error')).toContain('(invalid_image)');
  });

  it('creates a key (token shown once) and revokes it', async () => {
    await go('/console/keys');
    await poll(() => page.locator('#keys-table tbody tr').count()).toBe(1);
    await page.fill('#key-name', 'ci');
    await page.click('#key-form button[type=submit]');
    await page.waitForSelector('#key-created:not([hidden])');
    const created = await page.inputValue('#key-token');
    expect(created).toMatch(/^dtl_/);
    await page.click('#key-copy');
    await poll(() => page.textContent('#key-copy')).toMatch(/Copied|Ctrl\+C/);
    await shot('keys');
    const me = await fetch(`${server.url}/v1/me`, { headers: { authorization: `Bearer ${created}` } });
    expect(me.status).toBe(200);
    await page.click('#keys-table tr:has-text("ci") button:has-text("Revoke")');
    await poll(() => page.textContent('#keys-table tr:has-text("ci")')).toContain('revoked');
    const after = await fetch(`${server.url}/v1/me`, { headers: { authorization: `Bearer ${created}` } });
    expect(after.status).toBe(401);
    urls.push(created);
  });

  it('another tenant opening these ids sees the API’s own 404', async () => {
    const admin = (p: string, body: unknown) =>
      fetch(`${server.url}${p}`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify(body) }).then(
        (r) => r.json() as Promise<{ id: string; token: string }>,
      );
    const other = await admin('/v1/tenants', { name: 'other' });
    const key = await admin(`/v1/tenants/${other.id}/keys`, { name: 'o', scopes: ['train', 'classify'] });
    const api = await fetch(`${server.url}/v1/datasets/${ids.dataset}`, { headers: { authorization: `Bearer ${key.token}` } });
    expect(api.status).toBe(404);
    const message = ((await api.json()) as { error: { message: string } }).error.message;
    const tab = await browser.context.newPage();
    tab.on('request', (r) => urls.push(r.url()));
    await tab.goto(`${server.url}/console`);
    await tab.fill('#signin-key', key.token);
    await tab.click('#signin-form button[type=submit]');
    await tab.waitForURL(/\/console\/datasets$/);
    await tab.goto(`${server.url}/console/datasets?dataset=${ids.dataset}`);
    await poll(() => tab.textContent('#notice')).toBe(`${message} (not_found)`);
    await tab.goto(`${server.url}/console/adapters?adapter=${ids.adapter}`);
    await poll(() => tab.textContent('#notice')).toContain('(not_found)');
    expect(await tab.isHidden('#metrics')).toBe(true);
    await tab.close();
  });

  it('fits a 390 px phone screen', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    for (const p of ['/console/datasets', '/console/training', '/console/try', '/console/keys']) {
      await go(p);
      await page.waitForSelector('#who:not(:empty)');
      // Elements reaching past the right edge (outside scrolling table wrappers), by id or tag.
      const wide = await page.evaluate<string[]>(`[...document.querySelectorAll('body *')]
        .filter((el) => el.getBoundingClientRect().right > document.documentElement.clientWidth + 0.5 && !el.closest('.scroll'))
        .map((el) => el.id || el.tagName.toLowerCase())`);
      expect(wide, p).toEqual([]);
      expect(await page.evaluate<number>('document.documentElement.scrollWidth - document.documentElement.clientWidth'), p).toBeLessThanOrEqual(0);
      expect(await page.isVisible('nav a[aria-current="page"]')).toBe(true);
    }
  });

  it('never put a credential in a URL, and raised no script error', () => {
    const secrets = [ADMIN, token, parseKey(token)!.secret];
    for (const u of urls) for (const s of secrets) expect(u).not.toContain(s);
    expect(urls.length).toBeGreaterThan(20);
    expect(pageErrors).toEqual([]);
  });
});
