import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CreateKeyCommand, DecryptCommand, EncryptCommand, GenerateDataKeyCommand, KMSInternalException } from '@aws-sdk/client-kms';
import { startChildGateway, type ChildGateway } from '../support/child-gateway';

/**
 * QKMS_HSM_PROFILE over the real SoftHSM2 token. softhsm2 is what every other test runs; here a
 * profile that expects the token to generate GCM IVs (nshield) meets a token that does not: the
 * gateway must refuse the output rather than encrypt under the zero IV it passed.
 */
describe('HSM profiles', function () {
  this.timeout(60000);
  let dir: string;
  let gw: ChildGateway;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-profile-'));
    gw = await startChildGateway({ QKMS_DATA_DIR: dir, QKMS_HSM_PROFILE: 'nshield' });
  });
  after(async () => {
    await gw.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('gcmIv "hsm" on a token that keeps the zero IV: Encrypt fails with KMSInternalException and no ciphertext; KWP data keys still work', async () => {
    const keyId = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    await assert.rejects(gw.client.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('never under a zero IV') })), KMSInternalException);
    assert.match(gw.output(), /left the zero IV in place; output discarded/);
    const dk = await gw.client.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256' }));
    const back = await gw.client.send(new DecryptCommand({ CiphertextBlob: dk.CiphertextBlob }));
    assert.deepEqual(Buffer.from(back.Plaintext!), Buffer.from(dk.Plaintext!));
  });
});

describe('Session-object recycling (QKMS_PKCS11_RECYCLE_SESSION_OBJECTS)', function () {
  this.timeout(60000);
  for (const thread of ['true', 'false']) {
    it(`re-initialises the module between calls every N session objects, unnoticed by clients (QKMS_HSM_THREAD=${thread})`, async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-recycle-'));
      const gw = await startChildGateway({ QKMS_DATA_DIR: dir, QKMS_PKCS11_RECYCLE_SESSION_OBJECTS: '5', QKMS_HSM_THREAD: thread });
      try {
        const keyId = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
        const results = await Promise.all(Array.from({ length: 24 }, async () => {
          const dk = await gw.client.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256' }));
          const back = await gw.client.send(new DecryptCommand({ CiphertextBlob: dk.CiphertextBlob }));
          return Buffer.from(back.Plaintext!).equals(Buffer.from(dk.Plaintext!));
        }));
        assert.ok(results.every(Boolean));
        const recycles = gw.output().match(/PKCS#11 module re-initialised to free session objects/g) ?? [];
        assert.ok(recycles.length >= 8, `${recycles.length} recycles for 48 session objects`);
        // Each one really finalised the module (what frees SoftHSM2's session objects), as /metrics shows.
        let finalized = 0;
        for (const deadline = Date.now() + 5000; finalized < recycles.length && Date.now() < deadline; await new Promise((r) => setTimeout(r, 100))) {
          const text = await (await fetch(`${gw.url}/metrics`)).text();
          finalized = Number(/^qkms_pkcs11_call_duration_seconds_count\{function="C_Finalize"\} (\d+)$/m.exec(text)?.[1] ?? 0);
        }
        assert.ok(finalized >= recycles.length, `C_Finalize ran ${finalized} times for ${recycles.length} recycles`);
      } finally {
        await gw.stop();
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});
