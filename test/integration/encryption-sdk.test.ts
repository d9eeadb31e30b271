import assert from 'node:assert/strict';
import { buildClient, CommitmentPolicy, getClient, KMS, KmsKeyringNode } from '@aws-crypto/client-node';
import { CreateKeyCommand } from '@aws-sdk/client-kms';
import { integration } from '../support/integration-hooks';
import { startGateway, TEST_CREDENTIALS, type Harness } from '../support/harness';

/**
 * The AWS Encryption SDK for JavaScript as users run it: KmsKeyringNode with a client provider
 * pointed at the gateway. It needs six-part ARNs with service `kms` (QKMS_ARN_FORMAT=aws) and
 * calls GenerateDataKey with NumberOfBytes, then Decrypt with the EDK's key ARN as KeyId. Messages
 * made under verenc, or read after a change of the setting: encryption-sdk-arn-formats.test.ts.
 */
describe('AWS Encryption SDK for JavaScript (KmsKeyringNode)', () => {
  let gw: Harness;
  let keyA: string;
  let keyB: string;
  const { encrypt, decrypt } = buildClient(CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT);

  before(async () => {
    gw = await startGateway(integration().hsm, { QKMS_ARN_FORMAT: 'aws' });
    keyA = (await gw.client.send(new CreateKeyCommand({ Description: 'esdk a' }))).KeyMetadata!.Arn!;
    keyB = (await gw.client.send(new CreateKeyCommand({ Description: 'esdk b' }))).KeyMetadata!.Arn!;
  });
  after(() => gw.close());

  const keyring = (generatorKeyId: string) =>
    new KmsKeyringNode({ generatorKeyId, clientProvider: getClient(KMS, { endpoint: gw.url, credentials: TEST_CREDENTIALS }) });

  it('encrypts a message with an encryption context and decrypts it', async () => {
    assert.match(keyA, /^arn:aws:kms:us-east-1:111122223333:key\//);
    const plaintext = Buffer.from('a message for the Encryption SDK, long enough to span a frame? no, but real');
    const { result } = await encrypt(keyring(keyA), plaintext, { encryptionContext: { purpose: 'esdk-test', tenant: 'acme' } });
    const { plaintext: back, messageHeader } = await decrypt(keyring(keyA), result);
    assert.deepEqual(back, plaintext);
    assert.equal(messageHeader.encryptionContext.purpose, 'esdk-test');
    assert.equal(messageHeader.encryptedDataKeys[0].providerInfo, keyA);
  });

  it('fails to decrypt with a keyring for a different key', async () => {
    const { result } = await encrypt(keyring(keyA), Buffer.from('only for key A'), { encryptionContext: { purpose: 'esdk-test' } });
    await assert.rejects(decrypt(keyring(keyB), result), /unencryptedDataKey has not been set|No .*data key/i);
  });
});
