import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CreateKeyCommand, DecryptCommand, GenerateDataKeyCommand, InvalidCiphertextException } from '@aws-sdk/client-kms';
import { integration } from '../support/integration-hooks';
import { rawCall, startGateway, type Harness } from '../support/harness';

const SEED_KEY_ID = '1234abcd-12ab-34cd-56ef-1234567890ab';

describe('GenerateDataKey and Decrypt on a SoftHSM2 token', () => {
  let gw: Harness;
  let keyId: string;
  let seedFile: string;

  before(async () => {
    seedFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-seed-')), 'seed.json');
    fs.writeFileSync(seedFile, JSON.stringify({ keys: [{ keyId: SEED_KEY_ID, description: 'the seed page key' }] }));
    gw = await startGateway(integration().hsm, { QKMS_SEED_FILE: seedFile });
    const created = await gw.client.send(new CreateKeyCommand({ Description: 'gdk tests' }));
    keyId = created.KeyMetadata!.KeyId!;
  });
  after(async () => {
    await gw.close();
    fs.rmSync(path.dirname(seedFile), { recursive: true, force: true });
  });

  it("answers the seed page's Example 1 verbatim, with its headers and response shape", async () => {
    const res = await rawCall(gw.url, 'TrentService.GenerateDataKey', JSON.stringify({ KeyId: SEED_KEY_ID, KeySpec: 'AES_256' }));
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/x-amz-json-1.1');
    assert.match(res.headers.get('x-amzn-requestid') ?? '', /^[0-9a-f-]{36}$/);
    assert.ok(res.headers.get('date'));
    assert.deepEqual(Object.keys(res.json!).sort(), ['CiphertextBlob', 'KeyId', 'KeyMaterialId', 'Plaintext']);
    assert.equal(res.json!.KeyId, `arn:verenc:111122223333:key/${SEED_KEY_ID}`);
    assert.equal(Buffer.from(res.json!.Plaintext, 'base64').length, 32);
    const back = await rawCall(gw.url, 'TrentService.Decrypt', JSON.stringify({ CiphertextBlob: res.json!.CiphertextBlob }));
    assert.equal(back.json!.Plaintext, res.json!.Plaintext);
    assert.equal(back.json!.KeyId, res.json!.KeyId);
  });

  it("answers the seed page's request syntax example (AES_256 with EncryptionContext Purpose=Test)", async () => {
    const res = await rawCall(gw.url, 'TrentService.GenerateDataKey', JSON.stringify({ KeyId: SEED_KEY_ID, KeySpec: 'AES_256', EncryptionContext: { Purpose: 'Test' } }));
    assert.equal(res.status, 200);
    const back = await rawCall(gw.url, 'TrentService.Decrypt', JSON.stringify({ CiphertextBlob: res.json!.CiphertextBlob, EncryptionContext: { Purpose: 'Test' } }));
    assert.equal(back.json!.Plaintext, res.json!.Plaintext);
  });

  for (const [what, params, bytes] of [
    ['KeySpec AES_128', { KeySpec: 'AES_128' }, 16],
    ['KeySpec AES_256', { KeySpec: 'AES_256' }, 32],
    ['NumberOfBytes 1', { NumberOfBytes: 1 }, 1],
    ['NumberOfBytes 7', { NumberOfBytes: 7 }, 7],
    ['NumberOfBytes 64', { NumberOfBytes: 64 }, 64],
    ['NumberOfBytes 1024', { NumberOfBytes: 1024 }, 1024],
  ] as const) {
    it(`round-trips a data key of ${what} through @aws-sdk/client-kms`, async () => {
      const context = { tenant: 'acme', purpose: 'round-trip' };
      const out = await gw.client.send(new GenerateDataKeyCommand({ KeyId: keyId, ...params, EncryptionContext: context }));
      assert.equal(out.Plaintext!.length, bytes);
      assert.ok(out.CiphertextBlob!.length <= 6144);
      assert.match(out.KeyMaterialId!, /^[0-9a-f]{64}$/);
      const back = await gw.client.send(new DecryptCommand({ CiphertextBlob: out.CiphertextBlob, EncryptionContext: { purpose: 'round-trip', tenant: 'acme' } }));
      assert.deepEqual(Buffer.from(back.Plaintext!), Buffer.from(out.Plaintext!));
      assert.equal(back.KeyId, out.KeyId);
      assert.equal(back.EncryptionAlgorithm, 'SYMMETRIC_DEFAULT');
    });
  }

  it('gives a different data key every time', async () => {
    const a = await gw.client.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256' }));
    const b = await gw.client.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256' }));
    assert.notDeepEqual(Buffer.from(a.Plaintext!), Buffer.from(b.Plaintext!));
  });

  describe('binds the encryption context', () => {
    const decryptFails = async (blob: Uint8Array, context?: Record<string, string>) =>
      assert.rejects(gw.client.send(new DecryptCommand({ CiphertextBlob: blob, EncryptionContext: context })), InvalidCiphertextException);

    it('rejects a missing, changed, extra or case-changed context with InvalidCiphertextException', async () => {
      const { CiphertextBlob } = await gw.client.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256', EncryptionContext: { a: '1', b: '2' } }));
      await decryptFails(CiphertextBlob!);
      await decryptFails(CiphertextBlob!, { a: '1' });
      await decryptFails(CiphertextBlob!, { a: '1', b: '3' });
      await decryptFails(CiphertextBlob!, { a: '1', b: '2', c: '3' });
      await decryptFails(CiphertextBlob!, { A: '1', b: '2' });
    });

    it('does not confuse {"ab":"c"} with {"a":"bc"}; an empty key or value is no context at all but a ValidationException', async () => {
      const { CiphertextBlob } = await gw.client.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256', EncryptionContext: { ab: 'c' } }));
      await decryptFails(CiphertextBlob!, { a: 'bc' });
      const noContext = await gw.client.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256' }));
      for (const EncryptionContext of [{ '': '' }, { '': 'x' }, { x: '' }] as Array<Record<string, string>>) {
        await assert.rejects(gw.client.send(new DecryptCommand({ CiphertextBlob: noContext.CiphertextBlob, EncryptionContext })), { name: 'ValidationException' });
      }
    });

    it('the InvalidCiphertextException body has no message, like AWS', async () => {
      const { CiphertextBlob } = await gw.client.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256', EncryptionContext: { a: '1' } }));
      const res = await rawCall(gw.url, 'TrentService.Decrypt', JSON.stringify({ CiphertextBlob: Buffer.from(CiphertextBlob!).toString('base64') }));
      assert.equal(res.status, 400);
      assert.equal(res.text, '{"__type":"InvalidCiphertextException"}');
    });
  });

  describe('detects tampering', () => {
    let blob: Buffer;
    before(async () => {
      const out = await gw.client.send(new GenerateDataKeyCommand({ KeyId: keyId, NumberOfBytes: 32, EncryptionContext: { k: 'v' } }));
      blob = Buffer.from(out.CiphertextBlob!);
    });

    const decryptRaw = (b: Buffer) => rawCall(gw.url, 'TrentService.Decrypt', JSON.stringify({ CiphertextBlob: b.toString('base64'), EncryptionContext: { k: 'v' } }));

    it('rejects a flip of any single bit position class in every byte', async function () {
      for (let i = 0; i < blob.length; i++) {
        for (const bit of [0x01, 0x80]) {
          const bad = Buffer.from(blob);
          bad[i] ^= bit;
          const res = await decryptRaw(bad);
          assert.equal(res.status, 400, `byte ${i} bit ${bit}: ${res.text}`);
          assert.equal(res.json!.__type, 'InvalidCiphertextException', `byte ${i} bit ${bit}: ${res.text}`);
        }
      }
    });

    it('rejects every truncation and an appended byte', async () => {
      for (let n = 1; n < blob.length; n++) {
        const res = await decryptRaw(blob.subarray(0, n));
        assert.equal(res.json!.__type, 'InvalidCiphertextException', `length ${n}`);
      }
      const res = await decryptRaw(Buffer.concat([blob, Buffer.from([0])]));
      assert.equal(res.json!.__type, 'InvalidCiphertextException');
    });

    it('rejects blobs spliced from two data keys or two KMS keys', async () => {
      const other = Buffer.from((await gw.client.send(new GenerateDataKeyCommand({ KeyId: keyId, NumberOfBytes: 32, EncryptionContext: { k: 'v' } }))).CiphertextBlob!);
      const key2 = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
      const fromKey2 = Buffer.from((await gw.client.send(new GenerateDataKeyCommand({ KeyId: key2, NumberOfBytes: 32, EncryptionContext: { k: 'v' } }))).CiphertextBlob!);
      const headerOfKey2 = Buffer.concat([fromKey2.subarray(0, 22), blob.subarray(22)]);
      assert.equal((await decryptRaw(headerOfKey2)).json!.__type, 'InvalidCiphertextException');
      const macSwapped = Buffer.concat([blob.subarray(0, blob.length - 32), other.subarray(other.length - 32)]);
      assert.equal((await decryptRaw(macSwapped)).json!.__type, 'InvalidCiphertextException');
    });

    it('never writes the data key or the ciphertext to the log', async () => {
      const out = await gw.client.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256' }));
      await gw.client.send(new DecryptCommand({ CiphertextBlob: out.CiphertextBlob }));
      const logs = gw.logText();
      assert.ok(logs.includes('GenerateDataKey'));
      assert.ok(!logs.includes(Buffer.from(out.Plaintext!).toString('base64')));
      assert.ok(!logs.includes(Buffer.from(out.CiphertextBlob!).toString('base64')));
      assert.ok(!logs.includes(Buffer.from(out.Plaintext!).toString('hex')));
    });
  });
});
