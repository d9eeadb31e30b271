import assert from 'node:assert/strict';
import { spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { Client } from 'pg';
import YAML from 'yaml';
import { makeCertificates } from '../support/certificates';
import { spawnGateway } from '../support/child-gateway';
import { TEST_CREDENTIALS } from '../support/harness';
import { integration } from '../support/integration-hooks';
import { KUBERNETES_SCHEMA_VERSION, schemaProblems, unknownFields, type Manifest } from '../support/kubernetes-schema';
import { podEnvironment, serviceLinksOf, type PodSpec } from '../support/kubernetes-pod';
import { sharedPostgres, skipWithoutPostgres } from '../support/postgres';

const ROOT = path.resolve(__dirname, '../..');
const DIR = path.join(ROOT, 'deploy/kubernetes');

function load(): Record<string, Manifest> {
  const files = fs.readdirSync(DIR).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
  return Object.fromEntries(files.map((f) => [f, YAML.parse(fs.readFileSync(path.join(DIR, f), 'utf8')) as Manifest]));
}
const byKind = (manifests: Record<string, Manifest>, kind: string): any => Object.values(manifests).find((m) => m.kind === kind);

describe(`deploy/kubernetes: manifests against the Kubernetes ${KUBERNETES_SCHEMA_VERSION} schema`, () => {
  const manifests = load();
  const deployment = byKind(manifests, 'Deployment');
  const pod: PodSpec = deployment.spec.template.spec;
  const [container] = pod.containers;
  const config = byKind(manifests, 'ConfigMap').data as Record<string, string>;
  const podLabels = deployment.spec.template.metadata.labels;

  it('are what kustomization.yaml applies: a ConfigMap, the Deployment, a Service, a PodDisruptionBudget and a NetworkPolicy', () => {
    const kustomization = YAML.parse(fs.readFileSync(path.join(DIR, 'kustomization.yaml'), 'utf8'));
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
    const { loadConfig } = require('../../src/config/load-config') as typeof import('../../src/config/load-config');
    const inputs = { configMaps: { 'qkms-config': config }, secrets, podName: 'qkms-7d9f8b6c5d-x2x7k' };
    const c = loadConfig(podEnvironment(pod, inputs));
    assert.deepEqual([c.port, c.probe, c.arnFormat, c.audit.replicaId, c.storeUrl], [8443, { port: 8081, host: '0.0.0.0' }, 'aws', 'qkms-7d9f8b6c5d-x2x7k', secrets['qkms-store'].url]);
    const withLinks = podEnvironment(pod, { ...inputs, serviceLinks: serviceLinksOf(byKind(manifests, 'Service'), '10.96.0.11') });
    assert.equal(withLinks.QKMS_PORT, '8443', 'the ConfigMap\'s QKMS_PORT wins over the link\'s, as in the kubelet');
    assert.throws(() => loadConfig(withLinks), /QKMS_SERVICE_HOST.*Service named qkms \(service links\); set enableServiceLinks: false/);
  });
});

describe('deploy/kubernetes: the pod as a real gateway process (mutual TLS on the KMS port, probes on the plain one)', function () {
  const manifests = load();
  const deployment = byKind(manifests, 'Deployment');
  const pod: PodSpec = deployment.spec.template.spec;
  const podName = 'qkms-5c9d7b8f6d-k2x9q';
  let root: string;
  let certs: ReturnType<typeof makeCertificates>;
  let storeUrl: string;
  before(async function () {
    this.timeout(60000);
    if (spawnSync('openssl', ['version']).error) this.skip(); // openssl not installed
    skipWithoutPostgres(this);
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-k8s-'));
    certs = makeCertificates(fs.mkdtempSync(path.join(root, 'certs-')));
    storeUrl = await (await sharedPostgres()).createDatabase('k8s');
  });
  after(() => root && fs.rmSync(root, { recursive: true, force: true }));

  /** The pod's environment, its volumes laid out under a directory of `root` (Secrets as files, the HSM client as the run's SoftHSM2 module), and this machine's loopback for its address. */
  function podOnThisMachine(serviceLinks?: Record<string, string>): Record<string, string> {
    const { token } = integration();
    const env = podEnvironment(pod, {
      configMaps: { 'qkms-config': byKind(manifests, 'ConfigMap').data },
      secrets: {
        'qkms-admin': { 'access-key-id': TEST_CREDENTIALS.accessKeyId, 'secret-access-key': TEST_CREDENTIALS.secretAccessKey },
        'qkms-store': { url: storeUrl },
        'qkms-hsm-pin': { pin: `${token.pin}\n` },
        'qkms-tls': { 'tls.crt': fs.readFileSync(certs.serverCert, 'utf8'), 'tls.key': fs.readFileSync(certs.serverKey, 'utf8'), 'ca.crt': fs.readFileSync(certs.ca, 'utf8') },
      },
      podName,
      volumesUnder: fs.mkdtempSync(path.join(root, 'pod-')),
      hsmModule: token.modulePath,
      serviceLinks,
    });
    // This machine's loopback and free ports for the pod's address, and the run's token for the partition.
    return { ...env, QKMS_HOST: '127.0.0.1', QKMS_PORT: '0', QKMS_PROBE_PORT: '0', QKMS_PKCS11_TOKEN_LABEL: token.label, SOFTHSM2_CONF: token.confPath };
  }

  it('answers kubelet on the probe paths of the manifest, refuses KMS clients without a certificate, serves those with one, and writes its audit chain under the pod name', async function () {
    this.timeout(60000);
    const gateway = spawnGateway(podOnThisMachine());
    const { child, output, exited } = gateway;
    try {
      const api = (await logged(gateway, 'listening')).address;
      assert.equal((await logged(gateway, 'listening')).tls, 'mutual');
      const probes = (await logged(gateway, 'listening for probes')).address;
      await logged(gateway, 'ready');
      const [container] = pod.containers;
      for (const probe of [container.livenessProbe, container.readinessProbe]) {
        const res = await fetch(`http://${probes}${probe.httpGet.path}`, { headers: { 'User-Agent': 'kube-probe/1.36' } });
        assert.equal(res.status, 200, `${probe.httpGet.path}: ${await res.text()}`);
      }
      assert.equal((await fetch(`http://${probes}/metrics`)).status, 200);
      for (const [method, url] of [['POST', '/'], ['GET', '/console/'], ['GET', '/health/extra'], ['DELETE', '/ready']]) {
        const res = await fetch(`http://${probes}${url}`, { method });
        assert.equal(res.status, 404, `${method} ${url}`);
        assert.equal(await res.text(), 'not found: this port serves only GET /health, /ready and /metrics\n');
      }
      await assert.rejects(fetch(`http://${api}/health`), 'the KMS port stays TLS-only');
      const kms = (tls: https.AgentOptions) =>
        new KMSClient({ endpoint: `https://${api}`, region: 'us-east-1', credentials: TEST_CREDENTIALS, maxAttempts: 1, requestHandler: new NodeHttpHandler({ httpsAgent: new https.Agent({ ca: fs.readFileSync(certs.ca), ...tls }) }) });
      await assert.rejects(kms({}).send(new CreateKeyCommand({})), 'no client certificate');
      const created = await kms({ cert: fs.readFileSync(certs.clientCert), key: fs.readFileSync(certs.clientKey) }).send(new CreateKeyCommand({}));
      assert.match(created.KeyMetadata!.Arn!, /^arn:aws:kms:us-east-1:111122223333:key\//, 'QKMS_ARN_FORMAT=aws');
      const db = new Client({ connectionString: storeUrl });
      await db.connect();
      try {
        assert.deepEqual((await db.query('SELECT replica_id FROM audit_chains')).rows.map((r) => r.replica_id), [podName]);
      } finally {
        await db.end();
      }
      child.kill('SIGTERM');
      assert.equal(await exited, 0, output());
      await assert.rejects(fetch(`http://${probes}/health`), 'the probe port closes with the KMS port');
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('exits 2 naming service links when the pod takes the variables of the Service named qkms', async function () {
    this.timeout(30000);
    const { output, exited } = spawnGateway(podOnThisMachine(serviceLinksOf(byKind(manifests, 'Service'), '10.96.0.11')));
    assert.equal(await exited, 2);
    assert.match(output(), /QKMS_PORT_443_TCP=tcp:\/\/10\.96\.0\.11:443, .*QKMS_SERVICE_HOST.*: not QKMS settings but the variables Kubernetes gives every pod for a Service named qkms \(service links\); set enableServiceLinks: false in the pod spec/);
  });
});

/** The first log line of a gateway process with this message, once it has logged it; fails at once if the process exits first. */
async function logged(gateway: { child: ChildProcess; output: () => string }, message: string): Promise<Record<string, any>> {
  const deadline = Date.now() + 30000;
  for (;;) {
    // Complete lines only: the last one may still be arriving.
    const line = gateway.output().split('\n').slice(0, -1).flatMap((l) => (l.startsWith('{') ? [JSON.parse(l)] : [])).find((l) => l.message === message);
    if (line) return line;
    if (gateway.child.exitCode !== null || Date.now() > deadline) throw new Error(`no "${message}" line from the gateway: ${gateway.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
