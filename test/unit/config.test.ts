import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CONFIG_DOCS, configSchema, loadConfig } from '../../src/config.js';
import { configTableMarkdown } from '../../src/config-docs.js';
import { AppError } from '../../src/errors.js';

describe('config', () => {
  it('has working defaults with nothing configured', () => {
    const c = loadConfig({});
    expect(c.PORT).toBe(8080);
    expect(c.DATABASE_URL).toBeUndefined();
    expect(c.TFJS_BACKEND).toBe('auto');
    expect(c.paths.pgliteDir).toBe(path.join(path.resolve('./data'), 'pglite'));
    expect(c.paths.blobDir).toBe(path.join(path.resolve('./data'), 'blobs'));
  });

  it('coerces numbers and booleans from strings', () => {
    const c = loadConfig({ PORT: '9000', WORKER_ENABLED: 'false', S3_FORCE_PATH_STYLE: '0' });
    expect(c.PORT).toBe(9000);
    expect(c.WORKER_ENABLED).toBe(false);
    expect(c.S3_FORCE_PATH_STYLE).toBe(false);
  });

  it('fails fast naming the bad variable', () => {
    const bad = [
      { PORT: 'eighty' },
      { TFJS_BACKEND: 'gpu' },
      { DATABASE_URL: 'mysql://x' },
      { WORKER_ENABLED: 'maybe' },
    ];
    for (const env of bad) {
      const name = Object.keys(env)[0];
      try {
        loadConfig(env);
        expect.unreachable(`${name} should be rejected`);
      } catch (err) {
        expect(err).toBeInstanceOf(AppError);
        expect((err as AppError).code).toBe('config_invalid');
        expect((err as AppError).message).toContain(name);
      }
    }
  });

  it('documents every variable, and the README table matches the schema', () => {
    expect(Object.keys(CONFIG_DOCS).sort()).toEqual(Object.keys(configSchema.shape).sort());
    const readme = readFileSync(path.resolve('README.md'), 'utf8');
    for (const line of configTableMarkdown().split('\n')) expect(readme).toContain(line);
  });
});
