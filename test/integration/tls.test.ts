import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { integration } from '../support/integration-hooks';
import { startGateway, TEST_CREDENTIALS, type Harness } from '../support/harness';

/** A throwaway CA, a server certificate for 127.0.0.1, a client certificate from the CA, and a rogue one. */
function makeCertificates(dir: string): Record<'ca' | 'serverCert' | 'serverKey' | 'clientCert' | 'clientKey' | 'rogueCert' | 'rogueKey', string> {
  const f = (name: string) => path.join(dir, name);
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  ssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=qkms-test-ca');
  fs.writeFileSync(f('server.ext'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  fs.writeFileSync(f('client.ext'), 'extendedKeyUsage=clientAuth\n');
  for (const [name, ext] of [['server', 'server.ext'], ['client', 'client.ext']]) {
    ssl('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=qkms-test-${name}`);
    ssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', ext);
  }
  ssl('req', '-x509', ...ec, '-keyout', 'rogue.key', '-out', 'rogue.pem', '-days', '2', '-subj', '/CN=rogue');
  return {
    ca: f('ca.pem'), serverCert: f('server.pem'), serverKey: f('server.key'),
    clientCert: f('client.pem'), clientKey: f('client.key'), rogueCert: f('rogue.pem'), rogueKey: f('rogue.key'),
  };
}

describe('Transport: HTTPS and client certificates', function () {
  let dir: string;
  let certs: ReturnType<typeof makeCertificates>;
  before(function () {
    if (spawnSync('openssl', ['version']).error) this.skip(); // openssl not installed
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-tls-'));
    certs = makeCertificates(dir);
  });
  after(() => dir && fs.rmSync(dir, { recursive: true, force: true }));

  const client = (gw: Harness, tls: https.AgentOptions) =>
    new KMSClient({
      endpoint: gw.url,
      region: 'us-east-1',
      credentials: TEST_CREDENTIALS,
      maxAttempts: 1,
      requestHandler: new NodeHttpHandler({ httpsAgent: new https.Agent({ ca: fs.readFileSync(certs.ca), ...tls }) }),
    });

  it('serves KMS over HTTPS with QKMS_TLS_CERT/QKMS_TLS_KEY', async () => {
    const gw = await startGateway(integration().hsm, { QKMS_TLS_CERT: certs.serverCert, QKMS_TLS_KEY: certs.serverKey });
    try {
      assert.match(gw.url, /^https:/);
      assert.ok((await client(gw, {}).send(new CreateKeyCommand({}))).KeyMetadata);
      await assert.rejects(fetch(gw.url.replace('https:', 'http:'), { method: 'POST' }));
    } finally {
      await gw.close();
    }
  });

  it('with QKMS_TLS_CLIENT_CA, only clients presenting a certificate from that CA get through', async () => {
    const gw = await startGateway(integration().hsm, { QKMS_TLS_CERT: certs.serverCert, QKMS_TLS_KEY: certs.serverKey, QKMS_TLS_CLIENT_CA: certs.ca });
    try {
      const withCert = client(gw, { cert: fs.readFileSync(certs.clientCert), key: fs.readFileSync(certs.clientKey) });
      assert.ok((await withCert.send(new CreateKeyCommand({}))).KeyMetadata);
      await assert.rejects(client(gw, {}).send(new CreateKeyCommand({})), 'no client certificate');
      await assert.rejects(client(gw, { cert: fs.readFileSync(certs.rogueCert), key: fs.readFileSync(certs.rogueKey) }).send(new CreateKeyCommand({})), 'rogue certificate');
    } finally {
      await gw.close();
    }
  });
});
