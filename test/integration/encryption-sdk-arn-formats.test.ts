import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { buildClient, CommitmentPolicy, getClient, KMS, KmsKeyringNode } from '@aws-crypto/client-node';
import { CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { AnyArnKmsKeyring } from '../../docs/examples/recover-encryption-sdk-message';
import { startChildGateway } from '../support/child-gateway';
import { integration } from '../support/integration-hooks';
import { startGateway, TEST_CREDENTIALS, type Harness } from '../support/harness';

const run = promisify(execFile);
const EXAMPLE = 'docs/examples/recover-encryption-sdk-message.ts';

/**
 * Encryption SDK messages made under one QKMS_ARN_FORMAT and read under the other, on one store
 * and token (the gateway restarted with the other setting): what the SDK's own keyrings do with
 * them, and the recovery path of README "ARNs" (docs/examples/recover-encryption-sdk-message.ts).
 */
describe('AWS Encryption SDK messages across a change of QKMS_ARN_FORMAT', () => {
  const { encrypt, decrypt } = buildClient(CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT);
  const context = { purpose: 'arn-format-test' };
  let dataDir: string;
  let gw: Harness | undefined;
  let keyId: string;
  let otherKeyId: string;

  // The gateway on the suite's store, restarted only when the format changes (a restart among
  // replicas starts processes).
  const restart = async (format: 'verenc' | 'aws') => {
    if (gw?.config.arnFormat === format) return gw;
    await gw?.close();
    gw = await startGateway(integration().hsm, { QKMS_DATA_DIR: dataDir, QKMS_ARN_FORMAT: format });
    return gw;
  };
  const sdkKeyring = (generatorKeyId: string) =>
    new KmsKeyringNode({ generatorKeyId, clientProvider: getClient(KMS, { endpoint: gw!.url, credentials: TEST_CREDENTIALS, region: 'us-east-1' }) });
  const discoveryKeyring = () =>
    new KmsKeyringNode({ discovery: true, clientProvider: getClient(KMS, { endpoint: gw!.url, credentials: TEST_CREDENTIALS, region: 'us-east-1' }) });
  const recoveryKeyring = (...keyIds: string[]) =>
    new AnyArnKmsKeyring({ kms: new KMSClient({ endpoint: gw!.url, region: 'us-east-1', credentials: TEST_CREDENTIALS }), keyIds });
  const awsArn = (id: string) => `arn:aws:kms:us-east-1:111122223333:key/${id}`;
  const verencArn = (id: string) => `arn:verenc:111122223333:key/${id}`;

  before(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-arn-format-'));
    const first = await restart('verenc');
    keyId = (await first.client.send(new CreateKeyCommand({ Description: 'esdk arn format' }))).KeyMetadata!.KeyId!;
    otherKeyId = (await first.client.send(new CreateKeyCommand({ Description: 'esdk arn format, other' }))).KeyMetadata!.KeyId!;
  });
  after(async () => {
    await gw?.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  describe('a message made under verenc', () => {
    const plaintext = Buffer.from('made while QKMS printed verenc ARNs');
    let message: Buffer;

    before(async () => {
      await restart('verenc');
      // A verenc ARN cannot configure the SDK's keyring, a bare key id can: and it encrypts.
      assert.throws(() => sdkKeyring(verencArn(keyId)), /Malformed arn/);
      const { result, messageHeader } = await encrypt(sdkKeyring(keyId), plaintext, { encryptionContext: context });
      assert.equal(messageHeader.encryptedDataKeys[0].providerInfo, verencArn(keyId));
      message = result;
    });

    it('cannot be decrypted by the SDK keyring that made it (no data key matches the key id)', async () => {
      await restart('verenc');
      await assert.rejects(decrypt(sdkKeyring(keyId), message), /unencryptedDataKey has not been set/);
    });

    it('cannot be decrypted by the SDK keyrings after the switch to aws (the ARN text differs; discovery cannot parse it)', async () => {
      await restart('aws');
      await assert.rejects(decrypt(sdkKeyring(awsArn(keyId)), message), /unencryptedDataKey has not been set/);
      await assert.rejects(decrypt(discoveryKeyring(), message), /Malformed arn/);
    });

    it('is recovered by AnyArnKmsKeyring under aws, given the key id or either ARN', async () => {
      await restart('aws');
      for (const allowed of [keyId, awsArn(keyId), verencArn(keyId)]) {
        const { plaintext: back, messageHeader } = await decrypt(recoveryKeyring(allowed), message);
        assert.deepEqual(back, plaintext);
        assert.equal(messageHeader.encryptionContext.purpose, context.purpose);
      }
    });

    it('is not decrypted by AnyArnKmsKeyring when its key is not allowed', async () => {
      await restart('aws');
      await assert.rejects(decrypt(recoveryKeyring(otherKeyId), message), /unencryptedDataKey has not been set/);
    });

    it('is not decrypted by AnyArnKmsKeyring when its recorded ARN is rewritten to an allowed key (Decrypt is pinned to that key)', async () => {
      await restart('aws');
      const forged = Buffer.from(message.toString('latin1').replace(verencArn(keyId), verencArn(otherKeyId)), 'latin1');
      assert.notDeepEqual(forged, message);
      await assert.rejects(decrypt(recoveryKeyring(otherKeyId), forged), /Unable to decrypt a data key: .*does not identify a CMK/);
    });

    it('is re-encrypted under the aws ARN by the example run as written, and the SDK keyring reads the result', async function () {
      this.timeout(60_000);
      const server = await restart('aws');
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-esdk-recover-'));
      try {
        fs.writeFileSync(path.join(dir, 'old.esdk'), message);
        const env = {
          PATH: process.env.PATH!,
          HOME: dir,
          AWS_ENDPOINT_URL_KMS: server.url,
          AWS_REGION: 'us-east-1',
          AWS_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId,
          AWS_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey,
          AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
        };
        const args = [EXAMPLE, '--in', path.join(dir, 'old.esdk'), '--key', keyId];
        await run('npx', ['tsx', ...args, '--out', path.join(dir, 'plain')], { env });
        assert.deepEqual(fs.readFileSync(path.join(dir, 'plain')), plaintext);
        await run('npx', ['tsx', ...args, '--reencrypt-to', awsArn(keyId), '--out', path.join(dir, 'new.esdk')], { env });
        const { plaintext: back, messageHeader } = await decrypt(sdkKeyring(awsArn(keyId)), fs.readFileSync(path.join(dir, 'new.esdk')));
        assert.deepEqual(back, plaintext);
        const { 'aws-crypto-public-key': signingKey, ...callerContext } = messageHeader.encryptionContext;
        assert.ok(signingKey, 'the default suite signs: the SDK added its own context key, which the example must not pass back');
        assert.deepEqual(callerContext, context);
        await assert.rejects(run('npx', ['tsx', ...args.slice(0, -1), otherKeyId, '--out', path.join(dir, 'x')], { env }), /unencryptedDataKey has not been set/);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe('a message made under aws', () => {
    const plaintext = Buffer.from('made while QKMS printed aws ARNs');
    let message: Buffer;

    before(async () => {
      await restart('aws');
      message = (await encrypt(sdkKeyring(awsArn(keyId)), plaintext, { encryptionContext: context })).result;
    });

    it('cannot be decrypted by the SDK keyring after a switch to verenc (Decrypt answers the verenc ARN)', async () => {
      await restart('verenc');
      await assert.rejects(decrypt(sdkKeyring(awsArn(keyId)), message), /KMS Decryption key does not match the requested key id/);
    });

    it('is recovered by AnyArnKmsKeyring under verenc', async () => {
      await restart('verenc');
      const { plaintext: back } = await decrypt(recoveryKeyring(keyId), message);
      assert.deepEqual(back, plaintext);
    });
  });
});

describe('The start-up log names the ARN format in effect', () => {
  const logLine = (output: string, pattern: RegExp) => output.split('\n').filter((l) => pattern.test(l)).map((l) => JSON.parse(l) as Record<string, string>);

  it('warns under the default verenc which clients need aws, and says aws plainly when it is set', async function () {
    this.timeout(60_000);
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-arn-log-'));
    try {
      const byDefault = await startChildGateway({ QKMS_DATA_DIR: dataDir });
      assert.equal(await byDefault.stop(), 0);
      const [warning] = logLine(byDefault.output(), /QKMS_ARN_FORMAT=verenc/);
      assert.equal(warning?.level, 'warn', byDefault.output());
      assert.equal(warning.arnFormat, 'verenc');
      assert.equal(warning.example, 'arn:verenc:111122223333:key/<id>');
      for (const client of ['AWS Encryption SDK', "Go's arn.Parse", 'Terraform', 'sops', 'QKMS_ARN_FORMAT=aws']) assert.ok(warning.message.includes(client), client);

      const aws = await startChildGateway({ QKMS_DATA_DIR: dataDir, QKMS_ARN_FORMAT: 'aws' });
      assert.equal(await aws.stop(), 0);
      const [info] = logLine(aws.output(), /QKMS_ARN_FORMAT=aws/);
      assert.equal(info?.level, 'info', aws.output());
      assert.equal(info.example, 'arn:aws:kms:us-east-1:111122223333:key/<id>');
      assert.doesNotMatch(aws.output(), /QKMS_ARN_FORMAT=verenc/);
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
