/**
 * infra/k8s: every object validates offline against the Kubernetes 1.27 / KEDA v2 schemas (unknown
 * fields included), the kustomizations list exactly the files present, and each variant (gpu, cpu)
 * holds the invariants that make it run: images, env names and values the service's config schema
 * accepts, probes on the real routes, GPU requests, security, KEDA wiring, PDB.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import {
  CONFIG_KEYS,
  EXTERNAL_ENV,
  INFRA,
  ROOT,
  containerEnv,
  find,
  isExample,
  isObj,
  listFiles,
  loadK8sDir,
  packageJson,
  readYamlDocs,
  rel,
  selects,
  validateK8s,
  type DeploymentObj,
  type K8sObject,
  type Loaded,
} from './manifests.js';

const K8S = path.join(INFRA, 'k8s');
const NAMESPACE = 'dtl-host';
const VARIANTS = ['gpu', 'cpu'] as const;
/** The uid the Dockerfiles' USER sets. */
const APP_UID = 10001;

const base = loadK8sDir(path.join(K8S, 'base'));
const variants = Object.fromEntries(
  VARIANTS.map((v) => {
    const own = loadK8sDir(path.join(K8S, v));
    return [v, { objects: [...base.objects, ...own.objects], kustomization: own.kustomization }];
  }),
) as Record<(typeof VARIANTS)[number], { objects: Loaded[]; kustomization: Record<string, unknown> | undefined }>;

interface ScaledObjectObj extends K8sObject {
  spec: {
    scaleTargetRef: { name: string; kind?: string; apiVersion?: string };
    minReplicaCount?: number;
    maxReplicaCount?: number;
    triggers: { type: string; metadata: Record<string, string>; authenticationRef?: { name: string } }[];
  };
}

describe('infra/k8s: schemas', () => {
  const files = listFiles(K8S, /\.ya?ml$/);

  it('finds the manifests', () => {
    expect(files.map(rel)).toEqual(
      expect.arrayContaining([
        'infra/k8s/base/keda.yaml',
        'infra/k8s/base/pdb.yaml',
        'infra/k8s/gpu/api.yaml',
        'infra/k8s/cpu/api.yaml',
        'infra/k8s/gpu/worker.yaml',
        'infra/k8s/cpu/worker.yaml',
      ]),
    );
  });

  for (const file of files) {
    it(`${rel(file)}: every object validates against its schema`, () => {
      const docs = readYamlDocs(file);
      expect(docs.length).toBeGreaterThan(0);
      for (const doc of docs) {
        if (isObj(doc) && doc.kind === 'Kustomization') continue;
        expect({ file: rel(file), problems: validateK8s(doc) }).toEqual({ file: rel(file), problems: [] });
      }
    });
  }

  it('the validator rejects wrong types, missing fields, unknown fields and unknown kinds', () => {
    const api = structuredClone(find<DeploymentObj>(variants.gpu.objects, 'Deployment', 'dtl-host-api'));
    expect(validateK8s(api)).toEqual([]);

    const wrongType = structuredClone(api) as unknown as { spec: { replicas: unknown } };
    wrongType.spec.replicas = 'two';
    expect(validateK8s(wrongType).join()).toMatch(/replicas must be integer/);

    const typo = structuredClone(api);
    const c = typo.spec.template.spec.containers[0] as unknown as Record<string, unknown>;
    c.readinesProbe = c.readinessProbe;
    delete c.readinessProbe;
    expect(validateK8s(typo)).toEqual(['unknown field /spec/template/spec/containers/0/readinesProbe']);

    const noPort = structuredClone(api);
    delete noPort.spec.template.spec.containers[0].livenessProbe?.httpGet?.port;
    expect(validateK8s(noPort).join()).toMatch(/httpGet must have required property port/);

    const so = structuredClone(find<ScaledObjectObj>(base.objects, 'ScaledObject', 'dtl-host-worker'));
    (so.spec as Record<string, unknown>).idleReplicas = 0;
    expect(validateK8s(so)).toEqual(['unknown field /spec/idleReplicas']);

    const pm = structuredClone(find<K8sObject & { spec: { podMetricsEndpoints: Record<string, unknown>[] } }>(base.objects, 'PodMonitor', 'dtl-host'));
    expect(validateK8s(pm)).toEqual([]);
    pm.spec.podMetricsEndpoints[0].bearerTokenSecrett = {};
    expect(validateK8s(pm).join()).toMatch(/bearerTokenSecrett/);

    expect(validateK8s({ apiVersion: 'batch/v1', kind: 'CronJob', metadata: { name: 'x' } })).toEqual([
      'no schema registered for batch/v1 CronJob',
    ]);
  });
});

describe('infra/k8s: kustomizations', () => {
  for (const dir of ['base', ...VARIANTS]) {
    it(`${dir}/kustomization.yaml lists exactly the manifests in its folder`, () => {
      const full = path.join(K8S, dir);
      const k = loadK8sDir(full).kustomization;
      expect(k).toBeDefined();
      expect(k?.namespace).toBe(NAMESPACE);
      const resources = k?.resources as string[];
      const ownFiles = resources.filter((r) => r.endsWith('.yaml'));
      const present = fs
        .readdirSync(full)
        .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml' && !isExample(f))
        .sort();
      expect([...ownFiles].sort()).toEqual(present);
      expect(resources.filter(isExample), 'example files are never applied').toEqual([]);
      for (const r of resources.filter((x) => !x.endsWith('.yaml'))) {
        expect(fs.existsSync(path.join(full, r, 'kustomization.yaml')), `${dir}: ${r}`).toBe(true);
      }
      if (dir !== 'base') expect(resources).toContain('../base');
    });
  }
});

describe.each(VARIANTS)('infra/k8s/%s', (variant) => {
  /** What `kubectl apply -k` writes. */
  const applied = variants[variant].objects;
  /** Plus what the operator creates from the examples (the Secret), for the env checks. */
  const objects = [...applied, ...base.examples];
  const api = find<DeploymentObj>(objects, 'Deployment', 'dtl-host-api');
  const worker = find<DeploymentObj>(objects, 'Deployment', 'dtl-host-worker');
  const deployments = [api, worker];
  const apiC = api.spec.template.spec.containers[0];
  const workerC = worker.spec.template.spec.containers[0];

  it('names are unique per kind and every namespaced object is in the namespace', () => {
    const keys = objects.map((o) => `${o.obj.kind}/${o.obj.metadata.name}`);
    expect(new Set(keys).size).toBe(keys.length);
    expect(find(objects, 'Namespace', NAMESPACE).metadata.labels?.['pod-security.kubernetes.io/enforce']).toBe(
      'restricted',
    );
    for (const { obj } of objects.filter((o) => o.obj.kind !== 'Namespace')) {
      expect(obj.metadata.namespace, `${obj.kind}/${obj.metadata.name}`).toBe(NAMESPACE);
    }
  });

  it(`runs the ${variant} image of this package version, with an explicit tag`, () => {
    for (const d of deployments) {
      expect(d.spec.template.spec.containers).toHaveLength(1);
      expect(d.spec.template.spec.containers[0].image).toBe(`dtl-host:${packageJson.version}-${variant}`);
    }
  });

  it('selectors match their own pod labels and not the other component', () => {
    for (const d of deployments) expect(selects(d.spec.selector.matchLabels, d.spec.template.metadata.labels)).toBe(true);
    expect(selects(api.spec.selector.matchLabels, worker.spec.template.metadata.labels)).toBe(false);
    expect(selects(worker.spec.selector.matchLabels, api.spec.template.metadata.labels)).toBe(false);
  });

  it('env: only names the config schema defines, values it accepts, one role per process', () => {
    for (const d of deployments) {
      const c = d.spec.template.spec.containers[0];
      const env = containerEnv(objects, c);
      const unknown = [...env.keys()].filter((k) => !CONFIG_KEYS.has(k) && !EXTERNAL_ENV.has(k));
      expect(unknown, d.metadata.name).toEqual([]);
      for (const e of c.env ?? []) expect(e.valueFrom, `${e.name} uses only literal values`).toBeUndefined();
      const config = loadConfig(Object.fromEntries(env));
      expect(config.TFJS_BACKEND).toBe('wasm');
      // GPU: the backbone on onnxruntime's CUDA provider, no silent fallback to the CPU.
      expect([config.BACKBONE_ENGINE, config.ENGINE_PROVIDER]).toEqual(variant === 'gpu' ? ['onnxruntime', 'cuda'] : ['auto', 'cpu']);
      expect(config.DATABASE_URL).toMatch(/^postgres:\/\//);
      expect(config.S3_BUCKET).toBeTruthy();
      expect(config.ADMIN_TOKEN?.length).toBeGreaterThanOrEqual(16);
    }
    expect(loadConfig(Object.fromEntries(containerEnv(objects, apiC))).WORKER_ENABLED).toBe(false);
    expect(loadConfig(Object.fromEntries(containerEnv(objects, workerC))).WORKER_ENABLED).toBe(true);
  });

  it('the worker runs `dtl-host worker` through the package bin', () => {
    expect(apiC.command).toBeUndefined(); // the image's CMD, i.e. `npm start`'s command
    expect(workerC.command).toEqual(['node', packageJson.bin['dtl-host'], 'worker']);
    expect(fs.existsSync(path.join(ROOT, packageJson.bin['dtl-host']))).toBe(true);
  });

  it('probes hit /healthz (liveness, startup) and /readyz (readiness) on the PORT the config sets', () => {
    for (const d of deployments) {
      const c = d.spec.template.spec.containers[0];
      const port = loadConfig(Object.fromEntries(containerEnv(objects, c))).PORT;
      const named = new Map((c.ports ?? []).map((p) => [p.name, p.containerPort]));
      expect(named.get('http'), d.metadata.name).toBe(port);
      expect(c.livenessProbe?.httpGet?.path).toBe('/healthz');
      expect(c.startupProbe?.httpGet?.path).toBe('/healthz');
      for (const probe of [c.livenessProbe, c.startupProbe, c.readinessProbe]) {
        if (probe === undefined) continue;
        const p = probe.httpGet?.port;
        expect(typeof p === 'string' ? named.get(p) : p).toBe(port);
      }
      // Scraped through the PodMonitor (with the metrics token), not by annotation (that would 401).
      expect(d.spec.template.metadata.annotations?.['prometheus.io/scrape']).toBeUndefined();
    }
    expect(apiC.readinessProbe?.httpGet?.path).toBe('/readyz');
  });

  it('Prometheus scrapes /metrics of every pod on its http port with the METRICS_TOKEN both the pods and the PodMonitor read', () => {
    const pm = find<K8sObject & {
      spec: { selector: { matchLabels: Record<string, string> }; podMetricsEndpoints: { port: string; path: string; authorization: { type: string; credentials: { name: string; key: string } } }[] };
    }>(objects, 'PodMonitor', 'dtl-host');
    expect(pm.spec.podMetricsEndpoints).toHaveLength(1);
    const [ep] = pm.spec.podMetricsEndpoints;
    expect(ep.path).toBe('/metrics');
    expect(ep.authorization.type).toBe('Bearer');
    expect(ep.authorization.credentials.key).toBe('METRICS_TOKEN');
    const secret = find<{ stringData: Record<string, string> }>(objects, 'Secret', ep.authorization.credentials.name);
    const token = secret.stringData.METRICS_TOKEN;
    for (const d of deployments) {
      expect(selects(pm.spec.selector.matchLabels, d.spec.template.metadata.labels), d.metadata.name).toBe(true);
      const c = d.spec.template.spec.containers[0];
      expect(c.ports?.map((p) => p.name), d.metadata.name).toContain(ep.port);
      // The very token the service will demand (and one its config accepts).
      const config = loadConfig(Object.fromEntries(containerEnv(objects, c)));
      expect(config.METRICS_TOKEN, d.metadata.name).toBe(token);
    }
  });

  it('the API drains within its grace period: preStop pause + request deadline fit', () => {
    const config = loadConfig(Object.fromEntries(containerEnv(objects, apiC)));
    const pre = apiC.lifecycle?.preStop?.exec?.command ?? [];
    expect(pre[0]).toBe('sleep');
    const grace = api.spec.template.spec.terminationGracePeriodSeconds ?? 30;
    expect(grace).toBeGreaterThan(Number(pre[1]) + config.REQUEST_DEADLINE_MS / 1000);
    // Worker.stop() gives running jobs a lease period to finish, then as long again to honour the
    // abort and release their leases: SIGKILL must come after both.
    const wConfig = loadConfig(Object.fromEntries(containerEnv(objects, workerC)));
    expect(worker.spec.template.spec.terminationGracePeriodSeconds ?? 30).toBeGreaterThan((2 * wConfig.JOB_LEASE_MS) / 1000);
  });

  it(variant === 'gpu' ? 'API and worker each request one nvidia.com/gpu' : 'nothing requests a GPU', () => {
    for (const d of deployments) {
      const res = d.spec.template.spec.containers[0].resources ?? {};
      const tolerates = (d.spec.template.spec.tolerations ?? []).some((t) => t.key === 'nvidia.com/gpu');
      if (variant === 'gpu') {
        expect(res.limits?.['nvidia.com/gpu'], d.metadata.name).toBe(1);
        // Extended resources cannot be overcommitted: a request must equal the limit.
        expect(res.requests?.['nvidia.com/gpu'] ?? 1).toBe(1);
        expect(tolerates).toBe(true);
      } else {
        expect(JSON.stringify(d)).not.toContain('nvidia.com/gpu');
      }
      expect(res.requests?.memory, d.metadata.name).toBeDefined();
      expect(res.limits?.memory, d.metadata.name).toBeDefined();
    }
  });

  it('pods meet the restricted Pod Security profile and can write only DATA_DIR and /tmp', () => {
    for (const d of deployments) {
      const pod = d.spec.template.spec;
      expect(pod.securityContext).toMatchObject({
        runAsNonRoot: true,
        runAsUser: APP_UID,
        runAsGroup: APP_UID,
        seccompProfile: { type: 'RuntimeDefault' },
      });
      expect(pod.automountServiceAccountToken).toBe(false);
      find(objects, 'ServiceAccount', pod.serviceAccountName ?? 'default');
      const c = pod.containers[0];
      expect(c.securityContext).toMatchObject({
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ['ALL'] },
      });
      for (const v of pod.volumes ?? []) {
        expect(Object.keys(v).filter((k) => k !== 'name'), `${d.metadata.name} volume ${String(v.name)}`).toEqual([
          'emptyDir',
        ]);
      }
      const mounts = (c.volumeMounts ?? []).map((m) => m.mountPath).sort();
      const dataDir = loadConfig(Object.fromEntries(containerEnv(objects, c))).paths.dataDir;
      expect(mounts).toEqual([dataDir, '/tmp'].sort());
    }
  });

  it('the Service sends to the API pods on the named http port', () => {
    const svc = find<K8sObject & { spec: { selector: Record<string, string>; ports: { targetPort: string }[] } }>(
      objects,
      'Service',
      'dtl-host-api',
    );
    expect(selects(svc.spec.selector, api.spec.template.metadata.labels)).toBe(true);
    expect(selects(svc.spec.selector, worker.spec.template.metadata.labels)).toBe(false);
    for (const p of svc.spec.ports) expect(apiC.ports?.map((x) => x.name)).toContain(p.targetPort);
  });

  it('a PodDisruptionBudget covers the API and cannot block a drain at minimum scale', () => {
    const pdb = find<K8sObject & { spec: { minAvailable: number; selector: { matchLabels: Record<string, string> } } }>(
      objects,
      'PodDisruptionBudget',
      'dtl-host-api',
    );
    expect(selects(pdb.spec.selector.matchLabels, api.spec.template.metadata.labels)).toBe(true);
    const so = find<ScaledObjectObj>(objects, 'ScaledObject', 'dtl-host-api');
    expect(pdb.spec.minAvailable).toBeLessThan(so.spec.minReplicaCount ?? 1);
  });

  it('KEDA scales the worker from zero on training jobs in PostgreSQL', () => {
    const so = find<ScaledObjectObj>(objects, 'ScaledObject', 'dtl-host-worker');
    expect(so.spec.scaleTargetRef).toMatchObject({ name: worker.metadata.name });
    expect(so.spec.scaleTargetRef.kind ?? 'Deployment').toBe('Deployment');
    expect(so.spec.minReplicaCount).toBe(0);
    expect(so.spec.maxReplicaCount).toBeGreaterThan(0);
    expect(so.spec.triggers).toHaveLength(1);
    const [t] = so.spec.triggers;
    expect(t.type).toBe('postgresql');
    expect(t.metadata.query).toMatch(/^select count\(\*\) from jobs where status\b.*'queued'/i);
    expect(t.metadata.activationTargetQueryValue).toBe('0');
    // One pod per WORKER_CONCURRENCY jobs.
    const concurrency = loadConfig(Object.fromEntries(containerEnv(objects, workerC))).WORKER_CONCURRENCY;
    expect(Number(t.metadata.targetQueryValue)).toBe(concurrency);
    // KEDA connects with the service's own DATABASE_URL.
    const auth = find<K8sObject & { spec: { secretTargetRef: { parameter: string; name: string; key: string }[] } }>(
      objects,
      'TriggerAuthentication',
      t.authenticationRef?.name ?? '',
    );
    const ref = auth.spec.secretTargetRef.find((r) => r.parameter === 'connection');
    expect(ref?.key).toBe('DATABASE_URL');
    const secret = find<{ stringData: Record<string, string> }>(objects, 'Secret', ref?.name ?? '');
    expect(secret.stringData.DATABASE_URL).toMatch(/^postgres:\/\//);
  });

  it('KEDA scales the API on queue depth and request rate, never below two replicas', () => {
    const so = find<ScaledObjectObj>(objects, 'ScaledObject', 'dtl-host-api');
    expect(so.spec.scaleTargetRef).toMatchObject({ name: api.metadata.name });
    expect(so.spec.minReplicaCount).toBeGreaterThanOrEqual(2);
    expect(so.spec.maxReplicaCount).toBeGreaterThanOrEqual(so.spec.minReplicaCount ?? 0);
    const queries = so.spec.triggers.map((t) => {
      expect(t.type).toBe('prometheus');
      expect(() => new URL(t.metadata.serverAddress)).not.toThrow();
      expect(Number(t.metadata.threshold)).toBeGreaterThan(0);
      return t.metadata.query;
    });
    // The all-tenants metric (one series per pod), never the per-tenant split, which would double it.
    expect(queries.some((q) => /dtl_classify_queue_depth\{/.test(q))).toBe(true);
    expect(queries.some((q) => q.includes('dtl_classify_queue_depth_by_tenant'))).toBe(false);
    expect(queries.some((q) => /rate\(dtl_http_requests_total/.test(q))).toBe(true);
  });

  it('each Deployment is scaled by exactly one ScaledObject', () => {
    const targets = objects.filter((o) => o.obj.kind === 'ScaledObject').map((o) => (o.obj as ScaledObjectObj).spec.scaleTargetRef.name);
    expect(targets.sort()).toEqual(deployments.map((d) => d.metadata.name).sort());
  });
});
