/**
 * Readers for the deployment files under infra/: YAML (multi-document, anchors and merge keys),
 * Kubernetes objects validated offline against the Kubernetes and KEDA schemas, Dockerfiles
 * parsed into stages, compose interpolation and .dockerignore matching. Only the test suites in
 * this folder use it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { z } from 'zod';
import { ConfigMap, Namespace, Secret, Service, ServiceAccount } from 'kubernetes-models/v1';
import { Deployment } from 'kubernetes-models/apps/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { ScaledObject, TriggerAuthentication } from '@kubernetes-models/keda/keda.sh/v1alpha1';
import { configSchema } from '../../src/config.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const INFRA = path.join(ROOT, 'infra');

export const rel = (file: string): string => path.relative(ROOT, file);

/** Every variable name the service reads (src/config.ts). */
export const CONFIG_KEYS: ReadonlySet<string> = new Set(Object.keys(configSchema.shape));
/**
 * Variables our containers may carry that are not the service's own settings: the AWS SDK's
 * standard credential chain, which CONFIG_DOCS.S3_BUCKET names as the source of S3 credentials.
 */
export const EXTERNAL_ENV: ReadonlySet<string> = new Set(['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY']);

export const packageJson = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
  version: string;
  bin: Record<string, string>;
  scripts: Record<string, string>;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};

/**
 * `npm start` split into the variables it sets in front of node (`NAME=${NAME:-value}`: process
 * tuning such as glibc's mmap threshold, which a running process cannot set for itself) and the
 * command itself; the images set the same variables and run the same command.
 */
export const startScript: { env: ReadonlyMap<string, string>; command: string } = (() => {
  const env = new Map<string, string>();
  let rest = packageJson.scripts.start.trim();
  for (;;) {
    const m = /^([A-Z_][A-Z0-9_]*)=\$\{\1:-([^}]*)\}\s+/.exec(rest);
    if (m === null) break;
    env.set(m[1], m[2]);
    rest = rest.slice(m[0].length);
  }
  return { env, command: rest };
})();

export type Obj = Record<string, unknown>;

export function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Every document of a YAML file; a syntax error or a YAML warning fails loudly. */
export function readYamlDocs(file: string): unknown[] {
  const docs = parseAllDocuments(fs.readFileSync(file, 'utf8'), { merge: true, prettyErrors: true });
  if (!Array.isArray(docs)) throw new Error(`${rel(file)}: not a YAML stream`);
  return docs
    .map((doc) => {
      const problems = [...doc.errors, ...doc.warnings];
      if (problems.length > 0) throw new Error(`${rel(file)}: ${problems.map((p) => p.message).join('; ')}`);
      return doc.toJS({ maxAliasCount: 100 }) as unknown;
    })
    .filter((d) => d !== null && d !== undefined);
}

export function listFiles(dir: string, ext: RegExp): string[] {
  const out: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listFiles(full, ext));
    else if (ext.test(entry.name)) out.push(full);
  }
  return out.sort();
}

// ---------------------------------------------------------------- Kubernetes

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: unknown;
}

export interface Loaded<T = K8sObject> {
  file: string;
  obj: T;
}

type ValidateThis = { prototype: { validate(this: unknown): void } };

/**
 * Prometheus Operator's PodMonitor (monitoring.coreos.com/v1), the fields we use, checked strictly
 * (no generated model of it is installed): an unknown field is an error, as with the others.
 */
const duration = z.string().regex(/^(\d+(ms|s|m|h))+$/, 'must be a Prometheus duration');
const secretKey = z.object({ name: z.string().min(1), key: z.string().min(1), optional: z.boolean().optional() }).strict();
const podMonitorSchema = z
  .object({
    apiVersion: z.literal('monitoring.coreos.com/v1'),
    kind: z.literal('PodMonitor'),
    metadata: z
      .object({ name: z.string().min(1), namespace: z.string().optional(), labels: z.record(z.string(), z.string()).optional(), annotations: z.record(z.string(), z.string()).optional() })
      .strict(),
    spec: z
      .object({
        jobLabel: z.string().optional(),
        podTargetLabels: z.array(z.string()).optional(),
        selector: z.object({ matchLabels: z.record(z.string(), z.string()).optional() }).strict(),
        namespaceSelector: z.object({ any: z.boolean().optional(), matchNames: z.array(z.string()).optional() }).strict().optional(),
        podMetricsEndpoints: z
          .array(
            z
              .object({
                port: z.string().optional(),
                path: z.string().startsWith('/').optional(),
                scheme: z.enum(['http', 'https']).optional(),
                interval: duration.optional(),
                scrapeTimeout: duration.optional(),
                authorization: z.object({ type: z.string().optional(), credentials: secretKey }).strict().optional(),
              })
              .strict(),
          )
          .min(1),
      })
      .strict(),
  })
  .strict();
const PodMonitor: ValidateThis = {
  prototype: {
    validate(this: unknown) {
      const r = podMonitorSchema.safeParse(this);
      if (!r.success) throw new Error(r.error.issues.map((i) => `/${i.path.join('/')}: ${i.message}`).join('; '));
    },
  },
};

/**
 * The kinds the manifests may use, each with its generated schema validator (Kubernetes 1.27 for
 * the built-in kinds, KEDA v2 CRDs for keda.sh). A kind missing here fails the suite: add its
 * model rather than letting an object go unchecked.
 */
const MODELS: Record<string, ValidateThis> = {
  'v1/Namespace': Namespace,
  'v1/ServiceAccount': ServiceAccount,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'apps/v1/Deployment': Deployment,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'keda.sh/v1alpha1/ScaledObject': ScaledObject,
  'keda.sh/v1alpha1/TriggerAuthentication': TriggerAuthentication,
  'monitoring.coreos.com/v1/PodMonitor': PodMonitor,
};

export const KUSTOMIZATION_TYPE = 'kustomize.config.k8s.io/v1beta1/Kustomization';

/**
 * Validates one object offline. Returns the problems found: schema violations (types, enums,
 * required fields), and, like `kubectl apply --validate=strict`, fields the schema does not know
 * (a typo such as `readinesProbe` is otherwise silently dropped by the API server).
 *
 * Unknown fields are found by handing the generated validator a proxy that records which keys it
 * reads: the validator reads every property its schema declares and enumerates only free-form
 * maps (labels, data, resource quantities), so a key never read and in no enumerated map is
 * unknown to the schema.
 */
export function validateK8s(obj: unknown): string[] {
  if (!isObj(obj) || typeof obj.apiVersion !== 'string' || typeof obj.kind !== 'string') {
    return ['not a Kubernetes object (apiVersion and kind missing)'];
  }
  const model = MODELS[`${obj.apiVersion}/${obj.kind}`];
  if (model === undefined) return [`no schema registered for ${obj.apiVersion} ${obj.kind}`];
  const tracked = trackReads(obj);
  try {
    model.prototype.validate.call(tracked.proxy);
  } catch (err) {
    return [err instanceof Error ? err.message : String(err)];
  }
  return tracked.unread().map((p) => `unknown field ${p}`);
}

function trackReads(root: Obj): { proxy: Obj; unread(): string[] } {
  const read = new WeakMap<object, Set<string> | 'all'>();
  const proxies = new WeakMap<object, object>();
  const wrap = (value: unknown): unknown => {
    if (value === null || typeof value !== 'object') return value;
    const known = proxies.get(value);
    if (known !== undefined) return known;
    const proxy = new Proxy(value, {
      get(target, key, receiver) {
        if (typeof key === 'string') {
          const seen = read.get(target) ?? new Set<string>();
          if (seen !== 'all') seen.add(key);
          read.set(target, seen);
        }
        return wrap(Reflect.get(target, key, receiver));
      },
      ownKeys(target) {
        read.set(target, 'all');
        return Reflect.ownKeys(target);
      },
    });
    proxies.set(value, proxy);
    return proxy;
  };
  const unread = (): string[] => {
    const out: string[] = [];
    const walk = (value: unknown, at: string): void => {
      if (value === null || typeof value !== 'object') return;
      if (Array.isArray(value)) {
        value.forEach((item, i) => walk(item, `${at}/${i}`));
        return;
      }
      const seen = read.get(value);
      for (const [key, child] of Object.entries(value)) {
        if (seen === 'all' || seen?.has(key)) walk(child, `${at}/${key}`);
        else out.push(`${at}/${key}`);
      }
    };
    walk(root, '');
    return out;
  };
  return { proxy: wrap(root) as Obj, unread };
}

/** Files named `*.example.yaml` are documentation the kustomization does not apply. */
export const isExample = (file: string): boolean => /\.example\.ya?ml$/.test(file);

/**
 * All objects of the YAML files under a folder (not recursive), kustomizations set apart, and the
 * objects of `*.example.yaml` files (not applied) set apart from those `kubectl apply -k` writes.
 */
export function loadK8sDir(dir: string): { objects: Loaded[]; examples: Loaded[]; kustomization: Obj | undefined } {
  const objects: Loaded[] = [];
  const examples: Loaded[] = [];
  let kustomization: Obj | undefined;
  for (const file of listFiles(dir, /\.ya?ml$/).filter((f) => path.dirname(f) === dir)) {
    for (const doc of readYamlDocs(file)) {
      if (!isObj(doc)) throw new Error(`${rel(file)}: a document is not a mapping`);
      if (`${String(doc.apiVersion)}/${String(doc.kind)}` === KUSTOMIZATION_TYPE) kustomization = doc;
      else (isExample(file) ? examples : objects).push({ file, obj: doc as unknown as K8sObject });
    }
  }
  return { objects, examples, kustomization };
}

export function find<T = K8sObject>(objects: Loaded[], kind: string, name: string): T {
  const hit = objects.filter((o) => o.obj.kind === kind && o.obj.metadata.name === name);
  if (hit.length !== 1) throw new Error(`expected one ${kind} ${name}, found ${hit.length}`);
  return hit[0].obj as unknown as T;
}

export interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: unknown;
}
export interface Probe {
  httpGet?: { path?: string; port?: string | number };
  exec?: { command: string[] };
  periodSeconds?: number;
  failureThreshold?: number;
}
export interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  ports?: { name?: string; containerPort: number }[];
  env?: EnvVar[];
  envFrom?: { configMapRef?: { name: string }; secretRef?: { name: string } }[];
  resources?: { requests?: Record<string, string | number>; limits?: Record<string, string | number> };
  startupProbe?: Probe;
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  lifecycle?: { preStop?: Probe };
  securityContext?: Obj;
  volumeMounts?: { name: string; mountPath: string }[];
}
export interface PodSpec {
  containers: Container[];
  securityContext?: Obj;
  serviceAccountName?: string;
  automountServiceAccountToken?: boolean;
  terminationGracePeriodSeconds?: number;
  tolerations?: { key?: string; operator?: string; effect?: string }[];
  volumes?: Obj[];
}
export interface DeploymentObj extends K8sObject {
  spec: {
    replicas?: number;
    selector: { matchLabels: Record<string, string> };
    template: { metadata: { labels: Record<string, string>; annotations?: Record<string, string> }; spec: PodSpec };
  };
}

/**
 * The environment a container starts with: ConfigMap and Secret keys from envFrom (later sources
 * win, as in Kubernetes), then its own `env`. Throws when a referenced ConfigMap/Secret is missing.
 */
export function containerEnv(objects: Loaded[], c: Container): Map<string, string> {
  const env = new Map<string, string>();
  for (const from of c.envFrom ?? []) {
    if (from.configMapRef) {
      const cm = find<{ data?: Record<string, string> }>(objects, 'ConfigMap', from.configMapRef.name);
      for (const [k, v] of Object.entries(cm.data ?? {})) env.set(k, v);
    }
    if (from.secretRef) {
      const s = find<{ stringData?: Record<string, string>; data?: Record<string, string> }>(
        objects,
        'Secret',
        from.secretRef.name,
      );
      for (const [k, v] of Object.entries(s.data ?? {})) env.set(k, Buffer.from(v, 'base64').toString('utf8'));
      for (const [k, v] of Object.entries(s.stringData ?? {})) env.set(k, v);
    }
  }
  for (const e of c.env ?? []) {
    if (e.value !== undefined) env.set(e.name, e.value);
    else env.set(e.name, '');
  }
  return env;
}

/** True when every label of `selector` is on `labels`. */
export function selects(selector: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

// ---------------------------------------------------------------- Dockerfiles

export interface Instruction {
  op: string;
  args: string;
  line: number;
}
export interface Stage {
  from: string;
  name?: string;
  instructions: Instruction[];
}
export interface Dockerfile {
  globalArgs: Map<string, string>;
  stages: Stage[];
}

/** Splits a Dockerfile into instructions (continuations joined, comments dropped) and stages. */
export function parseDockerfile(text: string): Dockerfile {
  const instructions: Instruction[] = [];
  const lines = text.split('\n');
  let buf = '';
  let start = 0;
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i];
    const trimmed = raw.trim();
    if (buf === '' && (trimmed === '' || trimmed.startsWith('#'))) continue;
    // Comment lines inside a continued instruction are dropped by Docker too.
    if (buf !== '' && trimmed.startsWith('#')) continue;
    if (buf === '') start = i + 1;
    if (trimmed.endsWith('\\')) {
      buf += `${trimmed.slice(0, -1)} `;
      continue;
    }
    buf += trimmed;
    const m = /^(\S+)\s*(.*)$/s.exec(buf);
    if (m) instructions.push({ op: m[1].toUpperCase(), args: m[2].trim(), line: start });
    buf = '';
  }
  if (buf !== '') throw new Error('Dockerfile ends inside a continued line');

  const globalArgs = new Map<string, string>();
  const stages: Stage[] = [];
  for (const ins of instructions) {
    if (ins.op === 'FROM') {
      const m = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      if (!m) throw new Error(`line ${ins.line}: cannot read FROM ${ins.args}`);
      const from = m[1].replace(/\$\{?(\w+)\}?/g, (_, name: string) => globalArgs.get(name) ?? `\${${name}}`);
      stages.push({ from, name: m[2], instructions: [] });
    } else if (stages.length === 0) {
      if (ins.op !== 'ARG') throw new Error(`line ${ins.line}: only ARG may precede the first FROM`);
      const [k, ...v] = ins.args.split('=');
      globalArgs.set(k.trim(), v.join('=').trim());
    } else {
      stages[stages.length - 1].instructions.push(ins);
    }
  }
  return { globalArgs, stages };
}

export function stage(df: Dockerfile, name: string): Stage {
  const s = df.stages.find((x) => x.name === name);
  if (s === undefined) throw new Error(`no stage ${name}`);
  return s;
}

/** A stage and the stages it builds on (FROM <stage>), nearest first. */
export function stageChain(df: Dockerfile, s: Stage): Stage[] {
  const chain = [s];
  let cur = s;
  for (;;) {
    const parent = df.stages.find((x) => x.name === cur.from);
    if (parent === undefined || chain.includes(parent)) return chain;
    chain.push(parent);
    cur = parent;
  }
}

/** The last value of an image setting (USER, CMD, HEALTHCHECK …) that a stage ends up with. */
export function effective(df: Dockerfile, s: Stage, op: string): string | undefined {
  for (const st of stageChain(df, s)) {
    const hit = st.instructions.filter((i) => i.op === op);
    if (hit.length > 0) return hit[hit.length - 1].args;
  }
  return undefined;
}

/** ENV of a stage including inherited stages (`ENV A=1 B=2` form). */
export function effectiveEnv(df: Dockerfile, s: Stage): Map<string, string> {
  const env = new Map<string, string>();
  for (const st of stageChain(df, s).reverse()) {
    for (const ins of st.instructions.filter((i) => i.op === 'ENV')) {
      for (const m of ins.args.matchAll(/(\w+)=("[^"]*"|\S*)/g)) env.set(m[1], m[2].replace(/^"|"$/g, ''));
    }
  }
  return env;
}

export interface Copy {
  from?: string;
  sources: string[];
  dest: string;
  line: number;
}

export function copies(s: Stage): Copy[] {
  return s.instructions
    .filter((i) => i.op === 'COPY' || i.op === 'ADD')
    .map((i) => {
      const words = i.args.split(/\s+/);
      const flags = words.filter((w) => w.startsWith('--'));
      const rest = words.filter((w) => !w.startsWith('--'));
      const from = flags.find((f) => f.startsWith('--from='))?.slice('--from='.length);
      return { from, sources: rest.slice(0, -1), dest: rest[rest.length - 1], line: i.line };
    });
}

/** JSON-array (exec) form of CMD / HEALTHCHECK CMD. */
export function execForm(args: string): string[] {
  const at = args.indexOf('[');
  if (at < 0) throw new Error(`not in exec form: ${args}`);
  return JSON.parse(args.slice(at)) as string[];
}

// ---------------------------------------------------------------- .dockerignore

/** Returns a predicate telling whether a context-relative path is left out of the build context. */
export function dockerignore(text: string): (p: string) => boolean {
  const rules = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!');
      const pattern = (negate ? l.slice(1) : l).replace(/^\/+|\/+$/g, '');
      const re = pattern
        .split('/')
        .map((part) =>
          part === '**'
            ? '(?:.*)'
            : part.replace(/[.+^${}()|\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]'),
        )
        .join('/')
        .replace(/\(\?:\.\*\)\//g, '(?:.*/)?');
      return { negate, re: new RegExp(`^${re}$`) };
    });
  return (p: string) => {
    const parts = p.replace(/^\.\/|\/+$/g, '').split('/');
    let excluded = false;
    // A path is excluded when it or any folder above it matches (the last matching rule wins).
    for (let n = 1; n <= parts.length; n++) {
      const prefix = parts.slice(0, n).join('/');
      for (const r of rules) if (r.re.test(prefix)) excluded = !r.negate;
      if (excluded) return true;
    }
    return excluded;
  };
}

// ---------------------------------------------------------------- compose

/** Compose's `${VAR}`, `${VAR:-default}`, `${VAR-default}` and `$$`, against the given variables. */
export function interpolate(value: string, vars: Record<string, string | undefined>): string {
  return value.replace(/\$\$|\$\{(\w+)(?:(:?-)([^}]*))?\}|\$(\w+)/g, (all, braced, op, dflt, bare) => {
    if (all === '$$') return '$';
    const name = (braced ?? bare) as string;
    const v = vars[name];
    if (op === ':-') return v === undefined || v === '' ? (dflt as string) : v;
    if (op === '-') return v === undefined ? (dflt as string) : v;
    return v ?? '';
  });
}

/** `environment:` as a map, from either the map or the `KEY=value` list form. */
export function composeEnv(service: Obj, vars: Record<string, string | undefined> = {}): Map<string, string> {
  const raw = service.environment;
  const env = new Map<string, string>();
  if (Array.isArray(raw)) {
    for (const item of raw as string[]) {
      const [k, ...v] = item.split('=');
      env.set(k, interpolate(v.join('='), vars));
    }
  } else if (isObj(raw)) {
    for (const [k, v] of Object.entries(raw)) env.set(k, interpolate(v === null ? '' : String(v), vars));
  }
  return env;
}

/** Override-file merge as compose does it for the keys used here: maps merge, scalars replace. */
export function mergeCompose(base: unknown, override: unknown): unknown {
  if (isObj(base) && isObj(override)) {
    const out: Obj = { ...base };
    for (const [k, v] of Object.entries(override)) out[k] = k in base ? mergeCompose(base[k], v) : v;
    return out;
  }
  return override;
}
