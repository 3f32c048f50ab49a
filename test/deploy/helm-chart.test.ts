/**
 * The Helm chart (deploy/helm/gprxy) without helm, which is neither a Debian 12 package nor on npm: the
 * values schema accepts the chart's values and the example's and refuses typos; the checked-in rendering
 * of the example (deploy/helm/examples/production.yaml) validates against the Kubernetes JSON schemas
 * (npm kubernetes-models, Kubernetes 1.27; @kubernetes-models/prometheus-operator for the ServiceMonitor),
 * follows the templates (every kind, every .Values path, the values where the templates put them), and
 * carries a gprxy config that gprxy itself accepts. `helm lint` and `helm template` were not run here.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import { parse, parseAllDocuments } from 'yaml';
import { describe, expect, it } from 'vitest';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { Deployment } from 'kubernetes-models/apps/v1';
import { ConfigMap, Secret, Service } from 'kubernetes-models/v1';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { buildProxyConfig } from '../../src/config/proxy-config.js';

const ROOT = fileURLToPath(new URL('../../deploy/helm/', import.meta.url));
const CHART = join(ROOT, 'gprxy');
const read = (path: string) => readFileSync(path, 'utf8');
type Doc = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const schema = JSON.parse(read(join(CHART, 'values.schema.json'))) as object;
const defaults = parse(read(join(CHART, 'values.yaml'))) as Doc;
const example = parse(read(join(ROOT, 'examples', 'values-production.yaml'))) as Doc;
const manifests = parseAllDocuments(read(join(ROOT, 'examples', 'production.yaml'))).map((d) => d.toJS() as Doc).filter(Boolean);
const templates = readdirSync(join(CHART, 'templates')).filter((f) => f.endsWith('.yaml'));

/** Helm merges the user's values over values.yaml (maps deeply, everything else replaced). */
function merge(base: Doc, over: Doc): Doc {
  const out: Doc = { ...base };
  for (const [k, v] of Object.entries(over)) {
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && base[k] && typeof base[k] === 'object' && !Array.isArray(base[k]) ? merge(base[k] as Doc, v as Doc) : v;
  }
  return out;
}
const values = merge(defaults, example);

function manifest(kind: string, name?: string): Doc {
  const found = manifests.find((m) => m.kind === kind && (name === undefined || m.metadata.name === name));
  if (!found) throw new Error(`the example renders no ${kind}${name ? ` ${name}` : ''}`);
  return found;
}

describe('values.schema.json', () => {
  const validate = new Ajv({ allErrors: true, strict: false }).compile(schema);

  it('accepts values.yaml and the example values', () => {
    expect(validate(defaults), JSON.stringify(validate.errors)).toBe(true);
    expect(validate(values), JSON.stringify(validate.errors)).toBe(true);
  });

  it('refuses a misspelt key, a wrong type, and a key the chart sets itself', () => {
    expect(validate({ ...defaults, replicas: 3 })).toBe(false);
    expect(validate({ ...defaults, drain: { preStopSeconds: '5s', graceSeconds: 30 } })).toBe(false);
    expect(validate({ ...defaults, config: { ...defaults.config, listen: '0.0.0.0:5432' } })).toBe(false);
    expect(validate({ ...defaults, ports: { postgres: 70000, metrics: 9187 } })).toBe(false);
  });
});

describe('the rendered example', () => {
  it('validates against the Kubernetes schemas, kind by kind', () => {
    const models: Record<string, (d: Doc) => { validate(): void }> = {
      Deployment: (d) => new Deployment(d),
      Service: (d) => new Service(d),
      ConfigMap: (d) => new ConfigMap(d),
      Secret: (d) => new Secret(d),
      PodDisruptionBudget: (d) => new PodDisruptionBudget(d),
      ServiceMonitor: (d) => new ServiceMonitor(d as ConstructorParameters<typeof ServiceMonitor>[0]),
    };
    for (const m of manifests) {
      const model = models[m.kind as string];
      expect(model, `no schema for ${m.kind}`).toBeDefined();
      expect(() => model!(m).validate(), `${m.kind} ${m.metadata.name}`).not.toThrow();
    }
    // The schemas catch a wrong type: the validation is real.
    const broken = structuredClone(manifest('Deployment'));
    broken.spec.template.spec.containers[0].ports[0].containerPort = 'postgres';
    expect(() => new Deployment(broken).validate()).toThrow(/containerPort/);
  });

  it('renders every template (the example enables all of them) and reads only values that exist', () => {
    const kinds = new Set(manifests.map((m) => m.kind));
    for (const t of templates) {
      const text = read(join(CHART, 'templates', t));
      const kind = /^kind: (\w+)/m.exec(text)?.[1];
      expect(kind && kinds.has(kind), `${t} (${kind}) is not in the example`).toBe(true);
      for (const [, path] of text.matchAll(/\.Values\.([A-Za-z0-9_.]+)/g)) {
        const missing = path!.split('.').reduce<unknown>((o, k) => (o && typeof o === 'object' && k in o ? (o as Doc)[k] : undefined), defaults);
        expect(missing, `${t} reads .Values.${path}, which values.yaml does not define`).not.toBeUndefined();
      }
    }
    const helpers = read(join(CHART, 'templates', '_helpers.tpl'));
    for (const [, path] of helpers.matchAll(/\.Values\.([A-Za-z0-9_.]+)/g)) {
      expect(path!.split('.').reduce<unknown>((o, k) => (o as Doc | undefined)?.[k], defaults), `.Values.${path}`).not.toBeUndefined();
    }
  });

  it('puts the values where the templates say: image, replicas, workers, ports, drain timing, probes, mounts', () => {
    const d = manifest('Deployment');
    const pod = d.spec.template.spec;
    const c = pod.containers[0];
    expect(d.spec.replicas).toBe(values.replicaCount);
    expect(c.image).toBe(`${values.image.repository}:${values.image.tag}`);
    expect(c.args).toEqual(['serve', '--config', '/etc/gprxy/config/gprxy.yaml', '--drain-timeout', `${values.drain.graceSeconds}s`, '--watch-config', '--watch-interval', '10s', '--workers', String(values.workers)]);
    // The drain fits in the grace period Kubernetes gives: preStop wait + drain + margin.
    expect(c.lifecycle.preStop.exec.command).toEqual(['sleep', String(values.drain.preStopSeconds)]);
    expect(pod.terminationGracePeriodSeconds).toBe(values.drain.preStopSeconds + values.drain.graceSeconds + 10);
    expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'metrics' });
    expect(c.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
    expect(Object.fromEntries(c.ports.map((p: Doc) => [p.name, p.containerPort]))).toEqual(values.ports);
    expect(c.resources).toEqual(values.resources);
    expect(c.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false });
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 10001 });
    expect(pod.volumes.find((v: Doc) => v.name === 'tls').secret.secretName).toBe(values.tls.secretName);
    expect(c.envFrom[0].secretRef.name).toBe(manifest('Secret').metadata.name);
    expect(Object.keys(manifest('Secret').stringData).sort()).toEqual(Object.keys(values.secretEnv).sort());

    const headless = manifest('Service', 'gprxy-headless');
    expect(headless.spec).toMatchObject({ clusterIP: 'None', publishNotReadyAddresses: true });
    expect(manifest('Service', 'gprxy').spec.ports).toEqual([{ name: 'postgres', port: values.ports.postgres, targetPort: 'postgres', protocol: 'TCP' }]);
    expect(manifest('PodDisruptionBudget').spec.maxUnavailable).toBe(values.podDisruptionBudget.maxUnavailable);
    // The ServiceMonitor selects the headless Service, which carries the metrics port.
    expect(headless.metadata.labels).toMatchObject(manifest('ServiceMonitor').spec.selector.matchLabels);
    expect(headless.spec.ports.map((p: Doc) => p.name)).toContain(manifest('ServiceMonitor').spec.endpoints[0].port);
  });

  it('carries a gprxy config that gprxy accepts, with the listeners and files the chart provides', () => {
    const text = manifest('ConfigMap').data['gprxy.yaml'] as string;
    const doc = parse(text) as Doc;
    expect(doc).toMatchObject({ ...values.config, listen: `0.0.0.0:${values.ports.postgres}`, metrics: { listen: `0.0.0.0:${values.ports.metrics}` } });
    const pem = '-----BEGIN PLACEHOLDER-----\n-----END PLACEHOLDER-----\n';
    const config = buildProxyConfig(doc, values.secretEnv as Record<string, string>, '/etc/gprxy/config', () => pem);
    expect(config.tls).toBeDefined();
    expect(config.files).toEqual(['/etc/gprxy/tls/tls.crt', '/etc/gprxy/tls/tls.key']);
    expect(config.cluster).toMatchObject({ listen: { port: values.ports.cluster } });
    expect(config.metrics).toEqual({ host: '0.0.0.0', port: values.ports.metrics });
  });
});
