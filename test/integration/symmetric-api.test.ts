import assert from 'node:assert/strict';
import {
  CreateKeyCommand,
  DecryptCommand,
  EncryptCommand,
  GenerateDataKeyWithoutPlaintextCommand,
  GenerateRandomCommand,
  IncorrectKeyException,
  InvalidCiphertextException,
  InvalidKeyUsageException,
  ReEncryptCommand,
} from '@aws-sdk/client-kms';
import { integration } from '../support/integration-hooks';
import { rawCall, startGateway, type Harness } from '../support/harness';

describe('Encrypt, ReEncrypt, GenerateDataKeyWithoutPlaintext, GenerateRandom', () => {
  let gw: Harness;
  let a: string;
  let b: string;
  before(async () => {
    gw = await startGateway(integration().hsm);
    a = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    b = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
  });
  after(() => gw.close());

  it('Encrypt then Decrypt round-trips 1 and 4096 bytes with a context, in a GCM blob', async () => {
    for (const size of [1, 4096]) {
      const plaintext = Buffer.alloc(size, size % 251);
      const out = await gw.client.send(new EncryptCommand({ KeyId: a, Plaintext: plaintext, EncryptionContext: { order: '42' } }));
      assert.equal(out.KeyId, `arn:verenc:111122223333:key/${a}`);
      assert.equal(out.EncryptionAlgorithm, 'SYMMETRIC_DEFAULT');
      const blob = Buffer.from(out.CiphertextBlob!);
      assert.equal(blob[1], 0x02);
      assert.equal(blob.length, 22 + 12 + size + 16);
      const back = await gw.client.send(new DecryptCommand({ CiphertextBlob: blob, EncryptionContext: { order: '42' } }));
      assert.deepEqual(Buffer.from(back.Plaintext!), plaintext);
      await assert.rejects(gw.client.send(new DecryptCommand({ CiphertextBlob: blob, EncryptionContext: { order: '43' } })), InvalidCiphertextException);
    }
  });

  it('Encrypt validates Plaintext length without echoing it, and rejects non-symmetric algorithms', async () => {
    const res = await rawCall(gw.url, 'TrentService.Encrypt', JSON.stringify({ KeyId: a, Plaintext: Buffer.alloc(4097, 7).toString('base64') }));
    assert.equal(res.json!.message, "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: Member must have length less than or equal to 4096");
    await assert.rejects(gw.client.send(new EncryptCommand({ KeyId: a, Plaintext: Buffer.from('x'), EncryptionAlgorithm: 'RSAES_OAEP_SHA_256' })), InvalidKeyUsageException);
  });

  it('detects tampering of a GCM blob at every byte', async () => {
    const { CiphertextBlob } = await gw.client.send(new EncryptCommand({ KeyId: a, Plaintext: Buffer.from('secret order data') }));
    const blob = Buffer.from(CiphertextBlob!);
    for (let i = 0; i < blob.length; i++) {
      const bad = Buffer.from(blob);
      bad[i] ^= 0x40;
      const res = await rawCall(gw.url, 'TrentService.Decrypt', JSON.stringify({ CiphertextBlob: bad.toString('base64') }));
      assert.equal(res.json!.__type, 'InvalidCiphertextException', `byte ${i}: ${res.text}`);
    }
  });

  it('ReEncrypt moves a ciphertext to another key and context, naming both keys and materials', async () => {
    const { CiphertextBlob } = await gw.client.send(new EncryptCommand({ KeyId: a, Plaintext: Buffer.from('move me'), EncryptionContext: { v: '1' } }));
    const out = await gw.client.send(
      new ReEncryptCommand({ CiphertextBlob, SourceEncryptionContext: { v: '1' }, DestinationKeyId: b, DestinationEncryptionContext: { v: '2' } }),
    );
    assert.equal(out.SourceKeyId, `arn:verenc:111122223333:key/${a}`);
    assert.equal(out.KeyId, `arn:verenc:111122223333:key/${b}`);
    assert.equal(out.SourceEncryptionAlgorithm, 'SYMMETRIC_DEFAULT');
    assert.equal(out.DestinationEncryptionAlgorithm, 'SYMMETRIC_DEFAULT');
    assert.match(out.SourceKeyMaterialId!, /^[0-9a-f]{64}$/);
    assert.notEqual(out.SourceKeyMaterialId, out.DestinationKeyMaterialId);
    const back = await gw.client.send(new DecryptCommand({ CiphertextBlob: out.CiphertextBlob, EncryptionContext: { v: '2' } }));
    assert.equal(Buffer.from(back.Plaintext!).toString(), 'move me');
    assert.equal(back.KeyId, `arn:verenc:111122223333:key/${b}`);
  });

  it('ReEncrypt re-wraps a data key blob (KWP) into a GCM blob; wrong SourceKeyId is IncorrectKeyException', async () => {
    const dk = await gw.client.send(new GenerateDataKeyWithoutPlaintextCommand({ KeyId: a, NumberOfBytes: 32 }));
    assert.ok(!('Plaintext' in dk));
    await assert.rejects(gw.client.send(new ReEncryptCommand({ CiphertextBlob: dk.CiphertextBlob, SourceKeyId: b, DestinationKeyId: b })), IncorrectKeyException);
    const moved = await gw.client.send(new ReEncryptCommand({ CiphertextBlob: dk.CiphertextBlob, SourceKeyId: a, DestinationKeyId: b }));
    const fromA = await gw.client.send(new DecryptCommand({ CiphertextBlob: dk.CiphertextBlob }));
    const fromB = await gw.client.send(new DecryptCommand({ CiphertextBlob: moved.CiphertextBlob }));
    assert.deepEqual(Buffer.from(fromA.Plaintext!), Buffer.from(fromB.Plaintext!));
    assert.equal(fromA.Plaintext!.length, 32);
  });

  it('GenerateDataKeyWithoutPlaintext returns only the blob, the key ARN and the material id', async () => {
    const raw = await rawCall(gw.url, 'TrentService.GenerateDataKeyWithoutPlaintext', JSON.stringify({ KeyId: a, KeySpec: 'AES_128' }));
    assert.deepEqual(Object.keys(raw.json!).sort(), ['CiphertextBlob', 'KeyId', 'KeyMaterialId']);
  });

  it('GenerateRandom returns 1..1024 bytes from the token and validates like AWS', async () => {
    const [x, y] = [await gw.client.send(new GenerateRandomCommand({ NumberOfBytes: 1024 })), await gw.client.send(new GenerateRandomCommand({ NumberOfBytes: 1024 }))];
    assert.equal(x.Plaintext!.length, 1024);
    assert.notDeepEqual(Buffer.from(x.Plaintext!), Buffer.from(y.Plaintext!));
    const missing = await rawCall(gw.url, 'TrentService.GenerateRandom', '{}');
    assert.deepEqual(missing.json, { __type: 'ValidationException', message: 'NumberOfBytes is required.' });
    const zero = await rawCall(gw.url, 'TrentService.GenerateRandom', '{"NumberOfBytes":0}');
    assert.equal(zero.json!.message, "1 validation error detected: Value '0' at 'numberOfBytes' failed to satisfy constraint: Member must have value greater than or equal to 1");
    const big = await rawCall(gw.url, 'TrentService.GenerateRandom', '{"NumberOfBytes":1025}');
    assert.match(big.json!.message, /less than or equal to 1024/);
  });
});
