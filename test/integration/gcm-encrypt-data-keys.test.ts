import assert from 'node:assert/strict';
import { CreateKeyCommand, DecryptCommand, GenerateDataKeyCommand, GenerateDataKeyWithoutPlaintextCommand, InvalidCiphertextException, ReEncryptCommand } from '@aws-sdk/client-kms';
import { integration } from '../support/integration-hooks';
import { startGateway, type Harness } from '../support/harness';

/**
 * QKMS_DATA_KEY_WRAP=AES_GCM_ENCRYPT on a real token: data keys from the token's RNG sealed with
 * C_Encrypt AES-GCM (AAD = header ‖ context), in the Encrypt blob's format (mechanism 0x02), for
 * tokens that will not let a generated key's value be read (docs/crypto.md "GCM encrypt").
 */
describe('Data keys sealed with C_Encrypt AES-GCM (QKMS_DATA_KEY_WRAP=AES_GCM_ENCRYPT)', function () {
  this.timeout(60000);
  let gw: Harness;
  let keyId: string;

  before(async () => {
    gw = await startGateway(integration().hsm, { QKMS_DATA_KEY_WRAP: 'AES_GCM_ENCRYPT' });
    keyId = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
  });
  after(() => gw.close());

  it('GenerateDataKey of 1, 32 and 1024 bytes gives 0x02 blobs that Decrypt opens only under their own encryption context', async () => {
    const context = { purpose: 'test' };
    for (const NumberOfBytes of [1, 32, 1024]) {
      const out = await gw.client.send(new GenerateDataKeyCommand({ KeyId: keyId, NumberOfBytes, EncryptionContext: context }));
      const blob = Buffer.from(out.CiphertextBlob!);
      assert.equal(out.Plaintext!.length, NumberOfBytes);
      assert.equal(blob[1], 0x02);
      const back = await gw.client.send(new DecryptCommand({ CiphertextBlob: blob, EncryptionContext: context }));
      assert.deepEqual(Buffer.from(back.Plaintext!), Buffer.from(out.Plaintext!));
      await assert.rejects(gw.client.send(new DecryptCommand({ CiphertextBlob: blob, EncryptionContext: { purpose: 'other' } })), InvalidCiphertextException);
      await assert.rejects(gw.client.send(new DecryptCommand({ CiphertextBlob: blob })), InvalidCiphertextException);
    }
  });

  it('GenerateDataKeyWithoutPlaintext and ReEncrypt work on its blobs', async () => {
    const sealed = await gw.client.send(new GenerateDataKeyWithoutPlaintextCommand({ KeyId: keyId, KeySpec: 'AES_256' }));
    const other = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    const moved = await gw.client.send(new ReEncryptCommand({ CiphertextBlob: sealed.CiphertextBlob, DestinationKeyId: other }));
    const [a, b] = await Promise.all([sealed.CiphertextBlob, moved.CiphertextBlob].map((CiphertextBlob) => gw.client.send(new DecryptCommand({ CiphertextBlob }))));
    assert.equal(a.Plaintext!.length, 32);
    assert.deepEqual(Buffer.from(b.Plaintext!), Buffer.from(a.Plaintext!));
  });
});
