import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { CreateKeyCommand } from '@aws-sdk/client-kms';
import { integration } from '../support/integration-hooks';
import { startGateway, TEST_CREDENTIALS, type Harness } from '../support/harness';

const SDK_ENV = {
  AWS_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId,
  AWS_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey,
  AWS_DEFAULT_REGION: 'us-east-1',
  AWS_EC2_METADATA_DISABLED: 'true',
  AWS_PAGER: '',
};

// Async only: a synchronous child would block the event loop that serves the gateway under test.
const run = promisify(execFile);

/** Finds a python with boto3 (Debian's python3-boto3 lives under /usr/bin/python3). */
function pythonWithBoto3(): string | undefined {
  return ['/usr/bin/python3', 'python3'].find((py) => spawnSync(py, ['-c', 'import boto3']).status === 0);
}

describe('Unmodified AWS clients against the gateway', function () {
  this.timeout(60000);
  let gw: Harness;
  let keyId: string;
  before(async () => {
    gw = await startGateway(integration().hsm);
    keyId = (await gw.client.send(new CreateKeyCommand({ Description: 'for the CLI and boto3' }))).KeyMetadata!.KeyId!;
  });
  after(() => gw.close());

  it('the AWS CLI creates a key, generates a data key with a context and decrypts it', async function () {
    if (spawnSync('aws', ['--version']).error) this.skip(); // awscli not installed: .ci/run installs it
    const aws = async (...args: string[]) =>
      JSON.parse((await run('aws', ['kms', ...args, '--endpoint-url', gw.url, '--output', 'json'], { env: { ...process.env, ...SDK_ENV } })).stdout);
    const created = await aws('create-key', '--description', 'cli');
    assert.equal(created.KeyMetadata.KeyState, 'Enabled');
    const dk = await aws('generate-data-key', '--key-id', created.KeyMetadata.KeyId, '--key-spec', 'AES_256', '--encryption-context', 'purpose=cli');
    assert.equal(Buffer.from(dk.Plaintext, 'base64').length, 32);
    const blobFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-cli-')), 'blob.bin');
    fs.writeFileSync(blobFile, Buffer.from(dk.CiphertextBlob, 'base64'));
    const back = await aws('decrypt', '--ciphertext-blob', `fileb://${blobFile}`, '--encryption-context', 'purpose=cli');
    assert.equal(back.Plaintext, dk.Plaintext);
    fs.rmSync(path.dirname(blobFile), { recursive: true });
    await assert.rejects(
      run('aws', ['kms', 'generate-data-key', '--key-id', 'fake-key-id', '--key-spec', 'AES_256', '--endpoint-url', gw.url], { env: { ...process.env, ...SDK_ENV } }),
      (e: { stderr: string }) => /NotFoundException.*Invalid keyId 'fake-key-id'/.test(e.stderr),
    );
  });

  it("curl's own SigV4 signer (--aws-sigv4) is accepted, and a wrong secret is not", async function () {
    if (spawnSync('curl', ['--version']).error) this.skip(); // curl not installed
    const curl = (secret: string) =>
      run('curl', ['-s', gw.url, '--aws-sigv4', 'aws:amz:us-east-1:kms', '--user', `${TEST_CREDENTIALS.accessKeyId}:${secret}`,
        '-H', 'Content-Type: application/x-amz-json-1.1', '-H', 'X-Amz-Target: TrentService.GenerateDataKey',
        '-d', JSON.stringify({ KeyId: keyId, KeySpec: 'AES_256' })]);
    const ok = JSON.parse((await curl(TEST_CREDENTIALS.secretAccessKey)).stdout);
    assert.equal(ok.KeyId, `arn:verenc:111122223333:key/${keyId}`);
    assert.equal(JSON.parse((await curl('not-the-secret-0123456789')).stdout).__type, 'InvalidSignatureException');
  });

  it('boto3 runs the seed request, decrypts, and gets typed exceptions', async function () {
    const python = pythonWithBoto3();
    if (!python) this.skip(); // python3-boto3 not installed: .ci/run installs it
    const script = `
import base64, json, sys, boto3
kms = boto3.client('kms', endpoint_url=sys.argv[1], region_name='us-east-1')
out = kms.generate_data_key(KeyId=sys.argv[2], KeySpec='AES_256', EncryptionContext={'Purpose': 'Test'})
back = kms.decrypt(CiphertextBlob=out['CiphertextBlob'], EncryptionContext={'Purpose': 'Test'})
assert back['Plaintext'] == out['Plaintext']
def disabled_key():
    kms.disable_key(KeyId=sys.argv[2])
    kms.generate_data_key(KeyId=sys.argv[2], KeySpec='AES_256')
errors = []
for call in (lambda: kms.decrypt(CiphertextBlob=out['CiphertextBlob']),
             lambda: kms.generate_data_key(KeyId='fake-key-id', KeySpec='AES_256'),
             disabled_key):
    try:
        call()
    except kms.exceptions.InvalidCiphertextException:
        errors.append('InvalidCiphertextException')
    except kms.exceptions.NotFoundException:
        errors.append('NotFoundException')
    except kms.exceptions.DisabledException:
        errors.append('DisabledException')
print(json.dumps({'keyId': out['KeyId'], 'errors': errors}))
`;
    const out = JSON.parse((await run(python!, ['-c', script, gw.url, keyId], { env: { ...process.env, ...SDK_ENV } })).stdout);
    assert.equal(out.keyId, `arn:verenc:111122223333:key/${keyId}`);
    assert.deepEqual(out.errors, ['InvalidCiphertextException', 'NotFoundException', 'DisabledException']);
  });
});
