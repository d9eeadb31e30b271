import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CreateKeyCommand, DecryptCommand, EncryptCommand, GenerateDataKeyCommand, InvalidCiphertextException, KMSClient, KMSInternalException } from '@aws-sdk/client-kms';
import { startChildGateway, withFaultyGateway, type ChildGateway } from '../support/child-gateway';
import { TEST_CREDENTIALS } from '../support/harness';

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

/**
 * SoftHSM2 2.6.1 answers a ciphertext that does not verify with CKR_GENERAL_ERROR. That reading is
 * the softhsm2 profile's alone (src/hsm/profiles.ts integrityErrors): on any other profile the same
 * code from a real HSM is a device fault, which must be a retryable 5xx, never a 400 that SDKs
 * give up on. Real gateway processes over a real SoftHSM2 token; QKMS_HSM_PROFILE=generic points
 * the generic profile at the SoftHSM2 module.
 */
describe('CKR_GENERAL_ERROR by HSM profile', function () {
  this.timeout(60000);

  const encrypted = async (gw: ChildGateway) => {
    const keyId = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    return (await gw.client.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('payload') }))).CiphertextBlob!;
  };
  const tampered = (blob: Uint8Array) => {
    const copy = Buffer.from(blob);
    copy[copy.length - 1] ^= 1; // the last byte of the GCM tag
    return copy;
  };
  /** Failed C_Decrypt calls with this CKR, from /metrics (the HSM thread reports each second). */
  const decryptErrors = async (gw: ChildGateway, ckr: string) => {
    await new Promise((r) => setTimeout(r, 1100));
    const text = await (await fetch(`${gw.url}/metrics`)).text();
    return Number(new RegExp(`^qkms_pkcs11_call_errors_total\\{function="C_Decrypt",ckr="${ckr}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
  };

  it('generic: CKR_GENERAL_ERROR from C_Decrypt is a 500 KMSInternalException, which the SDK retries and which then succeeds', () =>
    withFaultyGateway({ QKMS_HSM_PROFILE: 'generic' }, async (gw, setFaults) => {
      const blob = await encrypted(gw);
      await setFaults([{ function: 'C_Decrypt', ckr: 'CKR_GENERAL_ERROR', count: 1 }]);
      await assert.rejects(gw.client.send(new DecryptCommand({ CiphertextBlob: blob })), (err: unknown) => {
        assert.ok(err instanceof KMSInternalException, String(err));
        assert.equal(err.$metadata.httpStatusCode, 500);
        assert.equal(err.$fault, 'server');
        return true;
      });
      await setFaults([{ function: 'C_Decrypt', ckr: 'CKR_GENERAL_ERROR', count: 1 }]);
      const retrying = new KMSClient({ endpoint: gw.url, region: 'us-east-1', credentials: TEST_CREDENTIALS, maxAttempts: 3 });
      try {
        const out = await retrying.send(new DecryptCommand({ CiphertextBlob: blob }));
        assert.equal(Buffer.from(out.Plaintext!).toString(), 'payload');
        assert.equal(out.$metadata.attempts, 2, 'the first attempt met the device fault, the retry succeeded');
      } finally {
        retrying.destroy();
      }
      assert.match(gw.output(), /"QKMS_HSM_PROFILE":"generic"/);
    }));

  it('softhsm2: a tampered ciphertext (SoftHSM2 answers CKR_GENERAL_ERROR) is still InvalidCiphertextException, a 400', () =>
    withFaultyGateway({}, async (gw) => {
      const blob = await encrypted(gw);
      const before = await decryptErrors(gw, 'CKR_GENERAL_ERROR');
      await assert.rejects(gw.client.send(new DecryptCommand({ CiphertextBlob: tampered(blob) })), (err: unknown) => {
        assert.ok(err instanceof InvalidCiphertextException, String(err));
        assert.equal(err.$metadata.httpStatusCode, 400);
        return true;
      });
      assert.equal(await decryptErrors(gw, 'CKR_GENERAL_ERROR'), before + 1, 'the token answered CKR_GENERAL_ERROR, read as a bad tag');
    }));
});
