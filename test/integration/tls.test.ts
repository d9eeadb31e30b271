import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { integration } from '../support/integration-hooks';
import { makeCertificates } from '../support/certificates';
import { startGateway, TEST_CREDENTIALS, type Harness } from '../support/harness';

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
