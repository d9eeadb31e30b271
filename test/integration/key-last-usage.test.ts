import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { CreateKeyCommand, DisableKeyCommand, GenerateDataKeyCommand, GetKeyLastUsageCommand, ReEncryptCommand, SignCommand } from '@aws-sdk/client-kms';
import { startChildGateway } from '../support/child-gateway';
import { integration } from '../support/integration-hooks';
import { startGateway, TEST_CREDENTIALS, type Harness } from '../support/harness';

const run = promisify(execFile);

/** GetKeyLastUsage: each key's last successful cryptographic operation (src/domain/key-usage.ts). */
describe('GetKeyLastUsage', function () {
  this.timeout(60000);
  let gw: Harness;
  before(async () => {
    gw = await startGateway(integration().hsm);
  });
  after(() => gw.close());

  /**
   * The key's last usage once it names `requestId`: at once from the replica that served it, within
   * the 5 s flush interval from another (npm run test:replicas spreads requests over three).
   */
  async function usageOf(keyId: string, requestId: string | undefined) {
    for (const deadline = Date.now() + 8000; ; await new Promise((r) => setTimeout(r, 250))) {
      const u = await gw.client.send(new GetKeyLastUsageCommand({ KeyId: keyId }));
      if (u.KeyLastUsage?.KmsRequestId === requestId || Date.now() > deadline) return u;
    }
  }

  it('JS SDK v3: nothing for a new key; then the last successful operation with its request id, for both keys of a ReEncrypt; not a failed one', async () => {
    const before = Date.now() - 1000;
    const meta = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!;
    const fresh = await gw.client.send(new GetKeyLastUsageCommand({ KeyId: meta.Arn }));
    assert.equal(fresh.KeyId, meta.KeyId);
    assert.deepEqual(fresh.KeyLastUsage ?? {}, {});
    assert.ok(fresh.TrackingStartDate!.getTime() >= before && fresh.KeyCreationDate!.getTime() === meta.CreationDate!.getTime());

    const made = await gw.client.send(new GenerateDataKeyCommand({ KeyId: meta.KeyId, KeySpec: 'AES_256' }));
    const used = await usageOf(meta.KeyId!, made.$metadata.requestId);
    assert.equal(used.KeyLastUsage!.Operation, 'GenerateDataKey');
    assert.equal(used.KeyLastUsage!.KmsRequestId, made.$metadata.requestId);
    assert.ok(Math.abs(used.KeyLastUsage!.Timestamp!.getTime() - Date.now()) < 5000);

    const other = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    const moved = await gw.client.send(new ReEncryptCommand({ CiphertextBlob: made.CiphertextBlob, DestinationKeyId: other }));
    for (const keyId of [meta.KeyId, other]) {
      const u = await usageOf(keyId!, moved.$metadata.requestId);
      assert.deepEqual([u.KeyLastUsage!.Operation, u.KeyLastUsage!.KmsRequestId], ['ReEncrypt', moved.$metadata.requestId]);
    }

    await gw.client.send(new DisableKeyCommand({ KeyId: other }));
    await assert.rejects(gw.client.send(new GenerateDataKeyCommand({ KeyId: other, KeySpec: 'AES_256' })));
    assert.equal((await gw.client.send(new GetKeyLastUsageCommand({ KeyId: other }))).KeyLastUsage!.Operation, 'ReEncrypt', 'a failed operation counted');

    const ec = (await gw.client.send(new CreateKeyCommand({ KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' }))).KeyMetadata!.KeyId!;
    const signed = await gw.client.send(new SignCommand({ KeyId: ec, Message: Buffer.from('m'), SigningAlgorithm: 'ECDSA_SHA_256' }));
    assert.equal((await usageOf(ec, signed.$metadata.requestId)).KeyLastUsage!.Operation, 'Sign');
    await assert.rejects(gw.client.send(new GetKeyLastUsageCommand({ KeyId: 'alias/anything' })), (e: Error) => e.name === 'InvalidArnException');
  });

  it('boto3: get_key_last_usage reports the operation', async function () {
    // GetKeyLastUsage is recent: Debian 12's python3-boto3 does not know it; the image's Python does.
    const knows = "import boto3; boto3.client('kms', region_name='us-east-1').get_key_last_usage";
    const python = ['python3', '/usr/bin/python3'].find((py) => spawnSync(py, ['-c', knows]).status === 0);
    if (!python) {
      console.log('      (skipped: no boto3 here knows get_key_last_usage; botocore ≥ 1.40 does)');
      return this.skip();
    }
    const keyId = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    const script = `
import json, sys, boto3
kms = boto3.client('kms', endpoint_url=sys.argv[1], region_name='us-east-1')
import time
kms.encrypt(KeyId=sys.argv[2], Plaintext=b'x')
for _ in range(40):  # another replica answers within the 5 s flush interval (npm run test:replicas)
    usage = kms.get_key_last_usage(KeyId=sys.argv[2])['KeyLastUsage']
    if usage: break
    time.sleep(0.25)
print(json.dumps(usage.get('Operation')))
`;
    const env = { ...process.env, AWS_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey, AWS_EC2_METADATA_DISABLED: 'true' };
    assert.equal(JSON.parse((await run(python!, ['-c', script, gw.url, keyId], { env })).stdout), 'Encrypt');
  });

  it('survives a restart: the usage noted is written to the store when the gateway stops', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-usage-'));
    try {
      const first = await startChildGateway({ QKMS_DATA_DIR: dataDir });
      const keyId = (await first.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
      const made = await first.client.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_128' }));
      assert.equal(await first.stop(), 0);
      const second = await startChildGateway({ QKMS_DATA_DIR: dataDir });
      try {
        const u = await second.client.send(new GetKeyLastUsageCommand({ KeyId: keyId }));
        assert.deepEqual([u.KeyLastUsage?.Operation, u.KeyLastUsage?.KmsRequestId], ['GenerateDataKey', made.$metadata.requestId]);
      } finally {
        assert.equal(await second.stop(), 0);
      }
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
