/**
 * infra/k8s, what an operator relies on between applies: KEDA owns the replica counts (no
 * `replicas` in a scaled Deployment), no Secret with placeholders is applied, memory matches the
 * measured RSS, the API's upload spool holds its bound, and NetworkPolicies allow only what the
 * pods need. Schemas are checked in k8s.test.ts (every file, this one's NetworkPolicy included).
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import {
  INFRA,
  containerEnv,
  find,
  loadK8sDir,
  rel,
  selects,
  validateK8s,
  type DeploymentObj,
  type K8sObject,
} from './manifests.js';

const K8S = path.join(INFRA, 'k8s');
const base = loadK8sDir(path.join(K8S, 'base'));

interface ScaledObjectObj extends K8sObject {
  spec: { scaleTargetRef: { name: string }; triggers: { metadata: Record<string, string> }[] };
}

/** A Kubernetes memory quantity in bytes (the suffixes the manifests use). */
function quantity(q: string): number {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(q);
  if (m === null) throw new Error(`not a quantity: ${q}`);
  const unit = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, k: 1e3, M: 1e6, G: 1e9, T: 1e12 }[m[2] ?? ''] ?? 1;
  return Number(m[1]) * unit;
}

describe.each(['gpu', 'cpu'] as const)('infra/k8s/%s: operator invariants', (variant) => {
  /** What `kubectl apply -k` writes. */
  const applied = [...base.objects, ...loadK8sDir(path.join(K8S, variant)).objects];
  /** Plus what the operator creates from the examples (the Secret), for the env checks. */
  const objects = [...applied, ...base.examples];
  const api = find<DeploymentObj>(objects, 'Deployment', 'dtl-host-api');
  const worker = find<DeploymentObj>(objects, 'Deployment', 'dtl-host-worker');
  const deployments = [api, worker];
  const apiC = api.spec.template.spec.containers[0];

  it('no Deployment a ScaledObject targets sets replicas (an apply would reset the count KEDA set)', () => {
    const targets = applied
      .filter((o) => o.obj.kind === 'ScaledObject')
      .map((o) => (o.obj as ScaledObjectObj).spec.scaleTargetRef.name);
    expect(targets.length).toBeGreaterThan(0);
    for (const name of targets) {
      const d = find<DeploymentObj>(applied, 'Deployment', name);
      expect(d.spec, name).not.toHaveProperty('replicas');
    }
  });

  it('applies no Secret: the operator creates dtl-host-secrets (no CHANGE_ME placeholder reaches the cluster)', () => {
    expect(applied.filter((o) => o.obj.kind === 'Secret').map((o) => rel(o.file))).toEqual([]);
    for (const { file, obj } of applied) expect(JSON.stringify(obj), rel(file)).not.toContain('CHANGE_ME');
    // The example lists every key the pods and KEDA read from it.
    find(base.examples, 'Secret', 'dtl-host-secrets');
  });

  it('API memory: the request covers the measured ViT-B serving RSS plus the adapter cache, the limit 1 GiB more', () => {
    // README "Known limits": ViT-B serving peaks near 1.26 GB RSS (onnxruntime; 1.11 GB on tfjs).
    const measuredPeak = 1.26e9;
    const config = loadConfig(Object.fromEntries(containerEnv(objects, apiC)));
    const req = quantity(String(apiC.resources?.requests?.memory));
    const lim = quantity(String(apiC.resources?.limits?.memory));
    expect(req).toBeGreaterThanOrEqual(measuredPeak + config.ADAPTER_CACHE_BYTES);
    // docs/reliability.md's bound under load: peak < start + 1 GiB.
    expect(lim).toBeGreaterThanOrEqual(req + 2 ** 30);
    for (const d of deployments) {
      const r = d.spec.template.spec.containers[0].resources;
      expect(quantity(String(r?.limits?.memory)), d.metadata.name).toBeGreaterThanOrEqual(quantity(String(r?.requests?.memory)));
    }
  });

  it('worker memory: the request covers the measured ViT-B training RSS, the limit its peak plus the prefix cache and a data set', () => {
    // bench/worker-rss.ts (infra/README.md, "Upload spool and memory"): a worker training a
    // ViT-B/16 at batch 32 (frozen blocks on onnxruntime) ran at 1.94 GiB steady, 2.09 GiB peak.
    const steady = 1.94 * 2 ** 30;
    const peak = 2.09 * 2 ** 30;
    const workerC = worker.spec.template.spec.containers[0];
    const config = loadConfig(Object.fromEntries(containerEnv(objects, workerC)));
    const req = quantity(String(workerC.resources?.requests?.memory));
    const lim = quantity(String(workerC.resources?.limits?.memory));
    expect(config.WORKER_CONCURRENCY).toBe(1);
    expect(req).toBeGreaterThanOrEqual(steady);
    // Prefix rows grow to TRAIN_CACHE_BYTES on a large data set; its pixels (10 k images at 224 px) come on top.
    expect(lim).toBeGreaterThanOrEqual(peak + config.TRAIN_CACHE_BYTES + 10_000 * 224 * 224 * 3);
  });

  it('the API spool (DATA_DIR) holds 4 tenants each uploading UPLOADS_PER_TENANT maximum files at once', () => {
    // Uploads are spooled whole under DATA_DIR/tmp before they go to S3 (src/services/datasets.ts).
    const spoolTenants = 4;
    const config = loadConfig(Object.fromEntries(containerEnv(objects, apiC)));
    const mount = apiC.volumeMounts?.find((m) => m.mountPath === config.paths.dataDir);
    const volume = api.spec.template.spec.volumes?.find((v) => v.name === mount?.name) as
      | { emptyDir?: { sizeLimit?: string } }
      | undefined;
    const limit = quantity(String(volume?.emptyDir?.sizeLimit));
    expect(limit).toBeGreaterThanOrEqual(spoolTenants * config.UPLOADS_PER_TENANT * config.UPLOAD_MAX_BYTES);
  });

  it('NetworkPolicies: API takes traffic on http only, workers only the scrape; egress only DNS, PostgreSQL, S3', () => {
    type Port = { port: number | string; protocol?: string };
    type Policy = K8sObject & {
      spec: {
        podSelector: { matchLabels: Record<string, string> };
        policyTypes: string[];
        ingress: { from?: Record<string, unknown>[]; ports: Port[] }[];
        egress: { to?: unknown[]; ports: Port[] }[];
      };
    };
    const policies = applied.filter((o) => o.obj.kind === 'NetworkPolicy').map((o) => o.obj as Policy);
    const config = loadConfig(Object.fromEntries(containerEnv(objects, apiC)));
    const dbPort = Number(new URL(config.DATABASE_URL ?? '').port || 5432);
    const s3 = new URL(config.S3_ENDPOINT ?? 'https://s3.amazonaws.com');
    const s3Port = Number(s3.port || (s3.protocol === 'https:' ? 443 : 80));
    const allowed = ['53/UDP', '53/TCP', `${dbPort}/TCP`, `${s3Port}/TCP`].sort();
    for (const d of deployments) {
      const own = policies.filter((p) => selects(p.spec.podSelector.matchLabels, d.spec.template.metadata.labels));
      expect(own, d.metadata.name).toHaveLength(1);
      const [p] = own;
      expect(p.spec.policyTypes.sort()).toEqual(['Egress', 'Ingress']);
      const ingressPorts = p.spec.ingress.flatMap((r) => r.ports.map((x) => `${String(x.port)}/${x.protocol ?? 'TCP'}`));
      expect(ingressPorts, d.metadata.name).toEqual(['http/TCP']);
      expect(d.spec.template.spec.containers[0].ports?.map((x) => x.name)).toContain('http');
      const egress = p.spec.egress.flatMap((r) => r.ports.map((x) => `${String(x.port)}/${x.protocol ?? 'TCP'}`));
      expect([...new Set(egress)].sort(), d.metadata.name).toEqual(allowed);
    }
    // Workers take no client traffic: only Prometheus's namespace may reach them.
    const wp = policies.find((p) => selects(p.spec.podSelector.matchLabels, worker.spec.template.metadata.labels));
    for (const r of wp?.spec.ingress ?? []) expect(r.from?.length ?? 0).toBeGreaterThan(0);
    const prometheus = new URL(find<ScaledObjectObj>(objects, 'ScaledObject', 'dtl-host-api').spec.triggers[0].metadata.serverAddress);
    const promNamespace = prometheus.hostname.split('.')[1];
    expect(JSON.stringify(wp?.spec.ingress)).toContain(`"kubernetes.io/metadata.name":"${promNamespace}"`);
    // The schema is really checked: a misspelt field is caught.
    const typo = structuredClone(policies[0]) as unknown as { spec: Record<string, unknown> };
    typo.spec.egres = typo.spec.egress;
    delete typo.spec.egress;
    expect(validateK8s(typo)).toEqual(['unknown field /spec/egres']);
  });
});
