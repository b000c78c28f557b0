/** @jsxRuntime automatic @jsxImportSource hono/jsx */
/**
 * The console at /console: server-rendered page shells (hono JSX) and their static assets (plain
 * ES modules and one stylesheet from ./client, read once). Every answer carries a strict
 * Content-Security-Policy: scripts and styles only from this origin, no inline script, requests
 * only to this origin. Pages are public; the data they show comes from /v1 with the caller's key.
 */
import { readdirSync, readFileSync } from 'node:fs';
import type { Context } from 'hono';
import type { JSX } from 'hono/jsx/jsx-runtime';
import { AppError } from '../../errors.js';
import { newRouter } from '../define.js';
import type { AppEnv } from '../env.js';
import { AdaptersPage } from './adapters.js';
import { AdminPage } from './admin.js';
import { DatasetsPage } from './datasets.js';
import { KeysPage } from './keys.js';
import { SignInPage } from './signin.js';
import { TrainingPage } from './training.js';
import { TryPage } from './try.js';

export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': CONSOLE_CSP,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};

const PAGES: Record<string, () => JSX.Element> = {
  '/console': SignInPage,
  '/console/datasets': DatasetsPage,
  '/console/training': TrainingPage,
  '/console/adapters': AdaptersPage,
  '/console/try': TryPage,
  '/console/keys': KeysPage,
  '/console/admin': AdminPage,
};

const TYPES: Record<string, string> = { js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8' };
const CLIENT_DIR = new URL('./client/', import.meta.url);

/** The client files, read once at start-up: a fixed set, so no request path ever reaches the file system. */
function loadAssets(): Map<string, { body: string; type: string }> {
  const assets = new Map<string, { body: string; type: string }>();
  for (const name of readdirSync(CLIENT_DIR)) {
    const ext = /^[a-z0-9-]+\.(js|css)$/.exec(name)?.[1];
    if (ext !== undefined) assets.set(name, { body: readFileSync(new URL(name, CLIENT_DIR), 'utf8'), type: TYPES[ext] });
  }
  return assets;
}

function secure(c: Context<AppEnv>, route: string): void {
  c.set('route', route);
  for (const [k, v] of Object.entries(SECURITY_HEADERS)) c.header(k, v);
}

export function consoleRouter() {
  const app = newRouter();
  const assets = loadAssets();
  for (const [path, Page] of Object.entries(PAGES)) {
    app.get(path, (c) => {
      secure(c, path);
      c.header('cache-control', 'no-store');
      return c.html(`<!doctype html>${(<Page />).toString()}`);
    });
  }
  app.get('/console/', (c) => c.redirect('/console', 301));
  app.get('/console/assets/:file', (c) => {
    secure(c, '/console/assets/{file}');
    const asset = assets.get(c.req.param('file'));
    if (asset === undefined) throw new AppError('not_found', `no console asset '${c.req.param('file')}'`);
    return c.body(asset.body, 200, { 'content-type': asset.type, 'cache-control': 'no-cache' });
  });
  return app;
}
