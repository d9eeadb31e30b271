import assert from 'node:assert/strict';
import { CreateKeyCommand, DecryptCommand, GenerateDataKeyCommand } from '@aws-sdk/client-kms';
import { integration } from '../support/integration-hooks';
import { rawCall, startGateway, type Harness } from '../support/harness';

/**
 * AES-CBC + HMAC blobs (mechanism 0x03) on a real token, sealed as a token without GCM or an exact
 * RFC 5649 wrap would seal them (QKMS_DATA_KEY_WRAP=AES_CBC_HMAC): crafted blobs never reach C_Decrypt.
 */
describe('AES-CBC + HMAC blobs against crafted input', function () {
  this.timeout(60000);
  let gw: Harness;
  let keyId: string;

  before(async () => {
    gw = await startGateway(integration().hsm, { QKMS_DATA_KEY_WRAP: 'AES_CBC_HMAC' });
    keyId = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
  });
  after(() => gw.close());

  it('a blob whose ciphertext swallows the head of its encryption context does not verify under the rest of that context', async () => {
    // encodeEncryptionContext({k: "abc\0\0\0\0"}) is 20 bytes: its first 16 are one CBC block and its
    // last 4, 00000000, are the encoding of the empty context. Moving the block into the ciphertext
    // must not leave the MAC input unchanged.
    const context = { k: 'abc\u0000\u0000\u0000\u0000' };
    const out = await gw.client.send(new GenerateDataKeyCommand({ KeyId: keyId, NumberOfBytes: 32, EncryptionContext: context }));
    const blob = Buffer.from(out.CiphertextBlob!);
    assert.equal(blob[1], 0x03);
    const encoded = Buffer.from('00000001000000016b00000007616263', 'hex');
    const forged = Buffer.concat([blob.subarray(0, blob.length - 32), encoded, blob.subarray(blob.length - 32)]);
    const res = await rawCall(gw.url, 'TrentService.Decrypt', JSON.stringify({ CiphertextBlob: forged.toString('base64') }));
    assert.equal(res.status, 400, JSON.stringify(res.json));
    assert.equal(res.json!.__type, 'InvalidCiphertextException');
    // The genuine blob still opens with its own context.
    const back = await gw.client.send(new DecryptCommand({ CiphertextBlob: blob, EncryptionContext: context }));
    assert.deepEqual(Buffer.from(back.Plaintext!), Buffer.from(out.Plaintext!));
  });
});
