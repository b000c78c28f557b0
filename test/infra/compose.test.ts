/**
 * infra/compose.yaml (+ compose.gpu.yaml): validated against the Compose Specification schema
 * that dclint ships, linted with dclint's correctness rules, and checked for the wiring that
 * makes the stack come up: images, env names and values the config schema accepts, service
 * URLs and credentials that agree, start order, health checks, GPU reservation.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DCLinter } from 'dclint';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import {
  CONFIG_KEYS,
  EXTERNAL_ENV,
  INFRA,
  ROOT,
  composeEnv,
  copies,
  effective,
  execForm,
  interpolate,
  isObj,
  mergeCompose,
  packageJson,
  parseDockerfile,
  readYamlDocs,
  stageChain,
  type Obj,
} from './manifests.js';

const BASE_FILE = path.join(INFRA, 'compose.yaml');
const GPU_FILE = path.join(INFRA, 'compose.gpu.yaml');
const OUR_IMAGE = /^dtl-host:/;

/** dclint's rules that catch mistakes; its style rules (key order, alphabetical lists) are off. */
const LINT_RULES = {
  'no-build-and-image': 0, // building and tagging our own image in one service is intended
  'require-project-name-field': 0, // docker-compose 1.x rejects a top-level `name`
  'service-dependencies-alphabetical-order': 0,
  'service-keys-order': 0,
  'service-ports-alphabetical-order': 0,
  'services-alphabetical-order': 0,
  'top-level-properties-order': 0,
  'require-quotes-in-ports': [2, { quoteType: 'double' }],
  'no-duplicate-container-names': 2,
  'no-duplicate-exported-ports': 2,
  'no-unbound-port-interfaces': 2,
  'no-version-field': 2,
  'service-image-require-explicit-tag': 2,
  'no-quotes-in-volumes': 2,
} as const;

function lint(files: string[]): { file: string; problems: string[] }[] {
  const linter = new DCLinter({ rules: LINT_RULES as never, quiet: false, debug: false, exclude: [] });
  // dclint's declaration files use extensionless relative imports that NodeNext cannot follow.
  const results = linter.lintFiles(files, false) as { filePath: string; messages: { rule: string; message: string }[] }[];
  return results.map((r) => ({ file: path.relative(ROOT, r.filePath), problems: r.messages.map((m) => `${m.rule}: ${m.message}`) }));
}

const load = (file: string): Obj => {
  const [doc] = readYamlDocs(file);
  if (!isObj(doc)) throw new Error(`${file}: not a mapping`);
  return doc;
};
const baseDoc = load(BASE_FILE);
const gpuDoc = mergeCompose(baseDoc, load(GPU_FILE)) as Obj;

const services = (doc: Obj): Record<string, Obj> => doc.services as Record<string, Obj>;
/** Variables as a user without any exported settings would have them: every default applies. */
const NO_VARS = {};

describe('infra/compose*.yaml: schema and lint', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dtl-compose-'));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('both files pass the Compose Specification schema and the correctness rules', () => {
    expect(lint([BASE_FILE, GPU_FILE])).toEqual([
      { file: 'infra/compose.yaml', problems: [] },
      { file: 'infra/compose.gpu.yaml', problems: [] },
    ]);
  });

  it('the schema check rejects a broken file', () => {
    const bad = path.join(tmp, 'compose.yaml');
    fs.writeFileSync(bad, fs.readFileSync(BASE_FILE, 'utf8').replace('    healthcheck:\n      test: ["CMD-SHELL"', '    healthchek:\n      test: ["CMD-SHELL"'));
    const [res] = lint([bad]);
    expect(res.problems.join('\n')).toMatch(/invalid-schema/);
  });
});

describe.each([
  ['compose.yaml', baseDoc, 'cpu'],
  ['compose.yaml + compose.gpu.yaml', gpuDoc, 'gpu'],
] as const)('%s', (_label, doc, variant) => {
  const svc = services(doc);
  const ours = Object.entries(svc).filter(([, s]) => OUR_IMAGE.test(String(s.image)));

  it('has PostgreSQL, MinIO, the bucket init, the API and a separate worker', () => {
    expect(Object.keys(svc).sort()).toEqual(['api', 'minio', 'minio-init', 'postgres', 'worker']);
    expect(ours.map(([n]) => n).sort()).toEqual(['api', 'minio-init', 'worker']);
  });

  it('images: ours are built from infra/docker at this package version; others carry explicit tags', () => {
    for (const [name, s] of Object.entries(svc)) {
      const image = String(s.image);
      expect(image, name).toMatch(/^[\w./-]+:[\w.-]+$/);
      expect(image, name).not.toMatch(/:latest$/);
    }
    for (const [name, s] of ours) {
      const api = svc.api.image;
      const build = s.build as Obj;
      expect(s.image, name).toBe(api);
      expect(s.image, name).toBe(`dtl-host:${packageJson.version}-${variant}`);
      expect(build.context).toBe('..');
      expect(build.dockerfile).toBe(`infra/docker/Dockerfile.${variant}`);
      const df = parseDockerfile(fs.readFileSync(path.join(ROOT, String(build.dockerfile)), 'utf8'));
      expect(df.stages.map((x) => x.name)).toContain(build.target);
      for (const arg of Object.keys((build.args as Obj | undefined) ?? {})) {
        expect(df.stages.some((x) => x.instructions.some((i) => i.op === 'ARG' && i.args.split('=')[0] === arg)), arg).toBe(true);
      }
    }
  });

  it('env: only config names (plus the AWS credential chain), values the config schema accepts', () => {
    for (const [name, s] of ours) {
      const env = composeEnv(s, NO_VARS);
      const unknown = [...env.keys()].filter((k) => !CONFIG_KEYS.has(k) && !EXTERNAL_ENV.has(k));
      expect(unknown, name).toEqual([]);
      const config = loadConfig(Object.fromEntries(env));
      expect(config.DATABASE_URL, name).toBeDefined();
      expect(config.S3_BUCKET, name).toBeDefined();
      const gpuCompute = name !== 'minio-init' && variant === 'gpu';
      expect(config.TFJS_BACKEND, name).toBe(gpuCompute ? 'wasm' : 'auto');
      // On GPU the backbone runs on onnxruntime's CUDA provider, and a provider that cannot start fails the start.
      expect([config.BACKBONE_ENGINE, config.ENGINE_PROVIDER], name).toEqual(gpuCompute ? ['onnxruntime', 'cuda'] : ['auto', 'cpu']);
    }
    expect(loadConfig(Object.fromEntries(composeEnv(svc.api))).WORKER_ENABLED).toBe(false);
    expect(loadConfig(Object.fromEntries(composeEnv(svc.worker))).WORKER_ENABLED).toBe(true);
    // The admin token can come from the shell; the default is long enough to be accepted.
    expect(composeEnv(svc.api, { ADMIN_TOKEN: 'from-the-shell-0123456789' }).get('ADMIN_TOKEN')).toBe('from-the-shell-0123456789');
    // /metrics is guarded on the API and the worker alike, with one token (the shell's, or a default the config accepts).
    for (const name of ['api', 'worker']) {
      expect(loadConfig(Object.fromEntries(composeEnv(svc[name], NO_VARS))).METRICS_TOKEN, name).toBeDefined();
      expect(composeEnv(svc[name], { METRICS_TOKEN: 'scraper-token-0123456789' }).get('METRICS_TOKEN'), name).toBe('scraper-token-0123456789');
    }
  });

  it('URLs and credentials agree with the PostgreSQL and MinIO services', () => {
    const pgEnv = composeEnv(svc.postgres);
    const minioEnv = composeEnv(svc.minio);
    for (const [name, s] of ours) {
      const config = loadConfig(Object.fromEntries(composeEnv(s)));
      const db = new URL(config.DATABASE_URL ?? '');
      expect(db.hostname, name).toBe('postgres');
      expect(db.port || '5432').toBe('5432');
      expect(decodeURIComponent(db.username)).toBe(pgEnv.get('POSTGRES_USER'));
      expect(decodeURIComponent(db.password)).toBe(pgEnv.get('POSTGRES_PASSWORD'));
      expect(db.pathname).toBe(`/${pgEnv.get('POSTGRES_DB')}`);
      const s3 = new URL(config.S3_ENDPOINT ?? '');
      expect(s3.hostname).toBe('minio');
      expect(s3.port).toBe('9000');
      expect(config.S3_FORCE_PATH_STYLE).toBe(true);
      const env = composeEnv(s);
      expect(env.get('AWS_ACCESS_KEY_ID')).toBe(minioEnv.get('MINIO_ROOT_USER'));
      expect(env.get('AWS_SECRET_ACCESS_KEY')).toBe(minioEnv.get('MINIO_ROOT_PASSWORD'));
    }
  });

  it('start order: bucket created once MinIO is healthy; API and worker after PostgreSQL and the bucket', () => {
    const dep = (s: Obj) => s.depends_on as Record<string, { condition: string }>;
    expect(dep(svc['minio-init'])).toEqual({ minio: { condition: 'service_healthy' } });
    for (const name of ['api', 'worker']) {
      expect(dep(svc[name])).toEqual({
        postgres: { condition: 'service_healthy' },
        'minio-init': { condition: 'service_completed_successfully' },
      });
    }
    // service_healthy needs a health check on the service waited for.
    for (const name of ['postgres', 'minio']) expect((svc[name].healthcheck as Obj).test, name).toBeDefined();
    expect(svc['minio-init'].restart).toBe('no');
  });

  it('commands: the worker is `dtl-host worker`, the init runs the shipped bucket script', () => {
    expect(svc.api.command).toBeUndefined(); // the image's CMD, i.e. `npm start`'s command
    expect(svc.worker.command).toEqual(['node', packageJson.bin['dtl-host'], 'worker']);
    const init = svc['minio-init'].command as string[];
    expect(init.slice(0, 3)).toEqual(['node', '--import', 'tsx']);
    expect(fs.existsSync(path.join(ROOT, init[3]))).toBe(true);
    // The script is in the image at the path the command names (WORKDIR /app).
    const df = parseDockerfile(fs.readFileSync(path.join(INFRA, 'docker', `Dockerfile.${variant}`), 'utf8'));
    const final = df.stages[df.stages.length - 1];
    const shipped = stageChain(df, final).flatMap(copies).some((c) => c.sources.includes(init[3]) && init[3].startsWith(c.dest.replace(/^\.\//, '')));
    expect(shipped).toBe(true);
    expect(execForm(effective(df, final, 'HEALTHCHECK') ?? '')[1]).toBe('/app/infra/docker/healthcheck.mjs');
  });

  it('the API is published on loopback at its PORT; grace periods cover draining', () => {
    const config = loadConfig(Object.fromEntries(composeEnv(svc.api)));
    expect(svc.api.ports).toEqual([`127.0.0.1:${config.PORT}:${config.PORT}`]);
    expect(svc.worker.ports).toBeUndefined();
    const seconds = (v: unknown) => Number(/^(\d+)s$/.exec(String(v))?.[1]);
    expect(seconds(svc.api.stop_grace_period)).toBeGreaterThan(config.REQUEST_DEADLINE_MS / 1000);
    const wConfig = loadConfig(Object.fromEntries(composeEnv(svc.worker)));
    // Worker.stop(): a lease period to finish, as long again to release (see the k8s suite).
    expect(seconds(svc.worker.stop_grace_period)).toBeGreaterThan((2 * wConfig.JOB_LEASE_MS) / 1000);
    for (const name of ['api', 'worker']) expect(svc[name].cap_drop, name).toEqual(['ALL']);
  });

  it(variant === 'gpu' ? 'API and worker each reserve one NVIDIA GPU' : 'nothing reserves a GPU', () => {
    for (const name of ['api', 'worker']) {
      const devices = ((((svc[name].deploy as Obj | undefined)?.resources as Obj | undefined)?.reservations as Obj | undefined)
        ?.devices ?? []) as Obj[];
      if (variant === 'gpu') expect(devices, name).toEqual([{ driver: 'nvidia', count: 1, capabilities: ['gpu'] }]);
      else expect(devices, name).toEqual([]);
    }
  });
});

describe('compose variable interpolation (as the tests read it)', () => {
  it('handles defaults, unset and escaped dollars', () => {
    expect(interpolate('${A:-x}', {})).toBe('x');
    expect(interpolate('${A:-x}', { A: '' })).toBe('x');
    expect(interpolate('${A-x}', { A: '' })).toBe('');
    expect(interpolate('a${B}c$$', { B: 'b' })).toBe('abc$');
  });
});
