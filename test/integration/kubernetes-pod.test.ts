import assert from 'node:assert/strict';
import { spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { Client } from 'pg';
import { makeCertificates } from '../support/certificates';
import { spawnGateway } from '../support/child-gateway';
import { TEST_CREDENTIALS } from '../support/harness';
import { integration } from '../support/integration-hooks';
import { podEnvironment, serviceLinksOf, type PodSpec } from '../support/kubernetes-pod';
import { byKind, loadManifests } from '../support/kubernetes-schema';
import { sharedPostgres, skipWithoutPostgres } from '../support/postgres';

/** No cluster runs here: deploy/kubernetes's pod, as far as a process on this machine can be it (docs/operations.md "Kubernetes"). */
describe('deploy/kubernetes: the pod as a real gateway process (mutual TLS on the KMS port, probes on the plain one)', function () {
  const manifests = loadManifests();
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
