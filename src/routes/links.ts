/** Absolute URLs this service hands out (OpenAPI `servers`, `Link` headers): PUBLIC_URL, else the request's origin. */
import type { Context } from 'hono';
import type { AppEnv } from './env.js';

export function publicBase(c: Context<AppEnv>): string {
  const configured = c.get('deps').config.PUBLIC_URL;
  return (configured ?? new URL(c.req.url).origin).replace(/\/+$/, '');
}

/** The absolute URL of this request's path with `query` as its query string. */
export function absoluteUrl(c: Context<AppEnv>, query: URLSearchParams): string {
  const q = query.toString();
  return `${publicBase(c)}${c.req.path}${q === '' ? '' : `?${q}`}`;
}
