import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { loadConfig } from '../../src/config/load-config';
import { byKind, KUBERNETES_SCHEMA_VERSION, loadManifests, MANIFESTS_DIR, schemaProblems, unknownFields } from '../support/kubernetes-schema';
import { podEnvironment, serviceLinksOf, type PodSpec } from '../support/kubernetes-pod';

const ROOT = path.resolve(__dirname, '../..');

describe(`deploy/kubernetes: manifests against the Kubernetes ${KUBERNETES_SCHEMA_VERSION} schema`, () => {
  const manifests = loadManifests();
  const deployment = byKind(manifests, 'Deployment');
  const pod: PodSpec = deployment.spec.template.spec;
  const [container] = pod.containers;
  const config = byKind(manifests, 'ConfigMap').data as Record<string, string>;
  const podLabels = deployment.spec.template.metadata.labels;

  it('are what kustomization.yaml applies: a ConfigMap, the Deployment, a Service, a PodDisruptionBudget and a NetworkPolicy', () => {
    const kustomization = YAML.parse(fs.readFileSync(path.join(MANIFESTS_DIR, 'kustomization.yaml'), 'utf8'));
    assert.deepEqual([...kustomization.resources].sort(), Object.keys(manifests).sort());
    assert.deepEqual(Object.values(manifests).map((m) => m.kind).sort(), ['ConfigMap', 'Deployment', 'NetworkPolicy', 'PodDisruptionBudget', 'Service']);
  });

  it('pass the schema: types, required fields, enums, formats, and no field the schema lacks', async function () {
    this.timeout(60000); // the TypeScript program loads the package's declarations
    const problems = (await Promise.all(Object.values(manifests).map(schemaProblems))).flat();
    assert.deepEqual(problems, []);
    assert.deepEqual(unknownFields(Object.values(manifests)), []);
  });

  it('and the check fails on a broken manifest (a misspelt field, a wrong type, a missing container name, a removed or unknown API version)', async function () {
    this.timeout(60000);
    const misspelt = structuredClone(deployment);
    misspelt.spec.template.spec.enableServiceLink = false;
    assert.deepEqual(await schemaProblems(misspelt), [], 'the OpenAPI schema leaves objects open: the reason for the second check');
    assert.deepEqual(unknownFields([misspelt]), [`Deployment/qkms: Object literal may only specify known properties, and '"enableServiceLink"' does not exist in type 'IPodSpec'.`]);
    const broken = structuredClone(deployment);
    broken.spec.replicas = 'two';
    delete broken.spec.template.spec.containers[0].name;
    assert.deepEqual(await schemaProblems(broken), ['Deployment/qkms: data/spec/replicas must be integer, data/spec/template/spec/containers/0 must have required property name']);
    assert.deepEqual(await schemaProblems({ ...deployment, apiVersion: 'extensions/v1beta1' }), ['Deployment/qkms: extensions/v1beta1 is not a GA API version']);
    assert.deepEqual(await schemaProblems({ ...deployment, apiVersion: 'apps/v2' }), ['Deployment/qkms: no apps/v2 Deployment in the Kubernetes 1.36.0 schema']);
  });

  it('run two replicas with probes on the plain-HTTP probe port: liveness /health, readiness /ready', () => {
    assert.equal(deployment.spec.replicas, 2);
    const ports = Object.fromEntries(container.ports.map((p: any) => [p.name, p.containerPort]));
    assert.deepEqual(ports, { kms: Number(config.QKMS_PORT), probes: Number(config.QKMS_PROBE_PORT) });
    assert.deepEqual(container.livenessProbe.httpGet, { path: '/health', port: 'probes' });
    assert.deepEqual(container.readinessProbe.httpGet, { path: '/ready', port: 'probes' });
    assert.ok(config.QKMS_TLS_CLIENT_CA, 'the KMS port demands client certificates: the reason for the probe port');
    assert.ok(container.resources.requests.cpu && container.resources.requests.memory && container.resources.limits.memory);
  });

  it('turn service links off, take the admin credential, the store URL and the PIN from Secrets, name each replica after its pod, and use AWS ARNs', () => {
    assert.equal(pod.enableServiceLinks, false);
    const env = Object.fromEntries(container.env.map((e: any) => [e.name, e]));
    assert.deepEqual(env.QKMS_ACCESS_KEY_ID.valueFrom.secretKeyRef, { name: 'qkms-admin', key: 'access-key-id' });
    assert.deepEqual(env.QKMS_SECRET_ACCESS_KEY.valueFrom.secretKeyRef, { name: 'qkms-admin', key: 'secret-access-key' });
    assert.deepEqual(env.QKMS_STORE_URL.valueFrom.secretKeyRef, { name: 'qkms-store', key: 'url' });
    assert.deepEqual(env.QKMS_REPLICA_ID.valueFrom.fieldRef, { fieldPath: 'metadata.name' });
    const pinMount = container.volumeMounts.find((m: any) => env.QKMS_PKCS11_PIN_FILE.value.startsWith(`${m.mountPath}/`));
    assert.equal(pod.volumes!.find((v: any) => v.name === pinMount.name)!.secret.secretName, 'qkms-hsm-pin');
    assert.equal(config.QKMS_ARN_FORMAT, 'aws');
    const literal = JSON.stringify([config, container.env.filter((e: any) => e.value !== undefined)]);
    assert.doesNotMatch(literal, /QKMS_PKCS11_PIN"|QKMS_SECRET_ACCESS_KEY"|postgres:\/\//, 'no secret is written into the manifests');
  });

  it('select the Deployment\'s pods from the Service, the PodDisruptionBudget and the NetworkPolicy, by port names the container has', () => {
    const service = byKind(manifests, 'Service');
    const pdb = byKind(manifests, 'PodDisruptionBudget');
    const policy = byKind(manifests, 'NetworkPolicy');
    for (const selector of [service.spec.selector, pdb.spec.selector.matchLabels, policy.spec.podSelector.matchLabels]) {
      assert.ok(Object.entries(selector).every(([k, v]) => podLabels[k] === v), JSON.stringify(selector));
    }
    assert.equal(service.metadata.name, 'qkms', 'the name whose service links the pods must not take');
    assert.deepEqual(service.spec.ports.map((p: any) => p.targetPort), ['kms']);
    assert.ok(pdb.spec.minAvailable < deployment.spec.replicas);
    const names = container.ports.map((p: any) => p.name);
    const allowed = policy.spec.ingress.flatMap((rule: any) => rule.ports.map((p: any) => p.port));
    assert.ok(allowed.includes('kms') && allowed.every((p: string) => names.includes(p)), allowed.join());
  });

  it('name in docs/operations.md the command that creates each Secret they reference, with its keys', () => {
    const docs = fs.readFileSync(path.join(ROOT, 'docs/operations.md'), 'utf8');
    const references = [
      ...container.env.flatMap((e: any) => (e.valueFrom?.secretKeyRef ? [e.valueFrom.secretKeyRef] : [])),
      ...pod.volumes!.flatMap((v: any) => (v.secret ? v.secret.items.map((i: any) => ({ name: v.secret.secretName, key: i.key })) : [])),
    ];
    for (const { name, key } of references) {
      const command = docs.split('\n').find((l) => l.includes(`kubectl create secret`) && l.includes(` ${name} `)) ?? '';
      assert.match(command, new RegExp(`--from-(literal|file)=${key.replace('.', '\\.')}=|--(cert|key)=`), `${name}/${key}`);
    }
  });

  it('configure a gateway the configuration check accepts, and one it refuses naming the cause once service links are on', () => {
    const secrets = { 'qkms-admin': { 'access-key-id': 'AKIAEXAMPLEEXAMPLE01', 'secret-access-key': 'an-example-secret-of-16+' }, 'qkms-store': { url: 'postgres://qkms:pw@postgres:5432/qkms' } };
    const inputs = { configMaps: { 'qkms-config': config }, secrets, podName: 'qkms-7d9f8b6c5d-x2x7k' };
    const c = loadConfig(podEnvironment(pod, inputs));
    assert.deepEqual([c.port, c.probe, c.arnFormat, c.audit.replicaId, c.storeUrl], [8443, { port: 8081, host: '0.0.0.0' }, 'aws', 'qkms-7d9f8b6c5d-x2x7k', secrets['qkms-store'].url]);
    const withLinks = podEnvironment(pod, { ...inputs, serviceLinks: serviceLinksOf(byKind(manifests, 'Service'), '10.96.0.11') });
    assert.equal(withLinks.QKMS_PORT, '8443', 'the ConfigMap\'s QKMS_PORT wins over the link\'s, as in the kubelet');
    assert.throws(() => loadConfig(withLinks), /QKMS_SERVICE_HOST.*Service named qkms \(service links\); set enableServiceLinks: false/);
  });
});
