import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
  CreateKeyCommand, DecryptCommand, EncryptCommand, GenerateMacCommand, KMSInternalException, SignCommand, VerifyCommand, VerifyMacCommand,
} from '@aws-sdk/client-kms';
import { withFaultyGateway, type ChildGateway } from '../support/child-gateway';

/**
 * The circuit breaker opens only when the token is down, never because of what one client sent:
 * a device-class error from one call is checked with a probe of the token (connection.ts), and
 * HMACs are verified with C_Sign and a compare in the gateway, not with C_Verify. Real gateway
 * processes over SoftHSM2; the token's misbehaviour is scripted at the PKCS#11 boundary
 * (QKMS_FAULTS_FILE) the way NSS softoken answers an HMAC mismatch: CKR_DEVICE_ERROR.
 */
describe('Circuit breaker: client-triggered failures never open it', function () {
  this.timeout(120000);

  const ready = async (gw: ChildGateway) => (await fetch(`${gw.url}/ready`)).status;
  /** Waits for the next token check of /ready (at most every 250 ms) and the HSM thread's stats (1 s). */
  const settled = () => new Promise((r) => setTimeout(r, 1100));
  const tokenUp = async (gw: ChildGateway) => /^qkms_hsm_token_up 1$/m.test(await (await fetch(`${gw.url}/metrics`)).text());
  const assertStillUp = async (gw: ChildGateway, after: string) => {
    await settled();
    assert.equal(await ready(gw), 200, `/ready after ${after}`);
    assert.ok(await tokenUp(gw), `qkms_hsm_token_up 1 after ${after}`);
    assert.equal(await (await fetch(`${gw.url}/health`)).status, 200);
    assert.doesNotMatch(gw.output(), /HSM token unavailable/, `the circuit never opened (${after})`);
  };
  const statusOf = async (p: Promise<unknown>) => p.then(() => 200, (e: { $metadata?: { httpStatusCode?: number }; name: string }) => e.$metadata?.httpStatusCode ?? 0);

  it('CKR_DEVICE_ERROR on one C_Decrypt, C_Sign or C_Verify while the token answers: that call fails (500 or "does not verify"), the circuit stays closed, other clients are served', () =>
    withFaultyGateway({}, async (gw, setFaults) => {
      const sym = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
      const rsa = (await gw.client.send(new CreateKeyCommand({ KeySpec: 'RSA_2048', KeyUsage: 'ENCRYPT_DECRYPT' }))).KeyMetadata!.KeyId!;
      const ecc = (await gw.client.send(new CreateKeyCommand({ KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' }))).KeyMetadata!.KeyId!;
      const message = Buffer.from('message');
      const rsaBlob = (await gw.client.send(new EncryptCommand({ KeyId: rsa, Plaintext: message, EncryptionAlgorithm: 'RSAES_OAEP_SHA_1' }))).CiphertextBlob!;
      const signature = (await gw.client.send(new SignCommand({ KeyId: ecc, Message: message, SigningAlgorithm: 'ECDSA_SHA_256' }))).Signature!;
      const served = async () => assert.ok((await gw.client.send(new EncryptCommand({ KeyId: sym, Plaintext: message }))).CiphertextBlob);

      await setFaults([{ function: 'C_Decrypt', ckr: 'CKR_DEVICE_ERROR', count: 1 }]);
      await assert.rejects(gw.client.send(new DecryptCommand({ KeyId: rsa, CiphertextBlob: rsaBlob, EncryptionAlgorithm: 'RSAES_OAEP_SHA_1' })), KMSInternalException);
      await served();
      await assertStillUp(gw, 'C_Decrypt failed');

      // The first C_Sign may be the audit trail's batch signature or the request's: either way that
      // request fails, as a 500, and nobody else.
      await setFaults([{ function: 'C_Sign', ckr: 'CKR_DEVICE_ERROR', count: 1 }]);
      await assert.rejects(gw.client.send(new SignCommand({ KeyId: ecc, Message: message, SigningAlgorithm: 'ECDSA_SHA_256' })), KMSInternalException);
      await served();
      await assertStillUp(gw, 'C_Sign failed');

      await setFaults([{ function: 'C_Verify', ckr: 'CKR_DEVICE_ERROR', count: 1 }]);
      const verified = gw.client.send(new VerifyCommand({ KeyId: ecc, Message: message, Signature: signature, SigningAlgorithm: 'ECDSA_SHA_256' }));
      assert.equal(await statusOf(verified), 400, 'a C_Verify that fails on a token that answers is "does not verify" (KMSInvalidSignatureException)');
      await served();
      await assertStillUp(gw, 'C_Verify failed');
      assert.match(gw.output(), /C_Decrypt failed: CKR_DEVICE_ERROR/, 'the failing call is logged by name');
    }));

  it('a token that reports every mismatch as CKR_DEVICE_ERROR (NSS softoken): bad MACs, contexts, ciphertexts, signatures and key ids are all 4xx, and the gateway stays ready', () =>
    withFaultyGateway({}, async (gw, setFaults) => {
      const sym = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
      const hmac = (await gw.client.send(new CreateKeyCommand({ KeySpec: 'HMAC_256', KeyUsage: 'GENERATE_VERIFY_MAC' }))).KeyMetadata!.KeyId!;
      const ecc = (await gw.client.send(new CreateKeyCommand({ KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' }))).KeyMetadata!.KeyId!;
      const message = Buffer.from('message');
      const blob = (await gw.client.send(new EncryptCommand({ KeyId: sym, Plaintext: message, EncryptionContext: { purpose: 'test' } }))).CiphertextBlob!;
      const mac = (await gw.client.send(new GenerateMacCommand({ KeyId: hmac, Message: message, MacAlgorithm: 'HMAC_SHA_256' }))).Mac!;
      await setFaults([{ function: 'C_Verify', ckr: 'CKR_DEVICE_ERROR' }]);

      const bad: Array<[string, () => Promise<unknown>]> = [
        ['Decrypt with the wrong encryption context', () => gw.client.send(new DecryptCommand({ CiphertextBlob: blob, EncryptionContext: { purpose: 'other' } }))],
        ['Decrypt of a tampered blob', () => gw.client.send(new DecryptCommand({ CiphertextBlob: Buffer.concat([blob.subarray(0, -1), Buffer.from([blob[blob.length - 1] ^ 1])]), EncryptionContext: { purpose: 'test' } }))],
        ['Decrypt of garbage', () => gw.client.send(new DecryptCommand({ CiphertextBlob: crypto.randomBytes(120) }))],
        ['VerifyMac with a wrong MAC', () => gw.client.send(new VerifyMacCommand({ KeyId: hmac, Message: message, Mac: crypto.randomBytes(32), MacAlgorithm: 'HMAC_SHA_256' }))],
        ['VerifyMac with a short MAC', () => gw.client.send(new VerifyMacCommand({ KeyId: hmac, Message: message, Mac: mac.subarray(0, 16), MacAlgorithm: 'HMAC_SHA_256' }))],
        ['Verify with a wrong signature', () => gw.client.send(new VerifyCommand({ KeyId: ecc, Message: message, Signature: Buffer.from('3006020101020101', 'hex'), SigningAlgorithm: 'ECDSA_SHA_256' }))],
        ['Verify with garbage', () => gw.client.send(new VerifyCommand({ KeyId: ecc, Message: message, Signature: crypto.randomBytes(70), SigningAlgorithm: 'ECDSA_SHA_256' }))],
        ['Encrypt under an unknown KeyId', () => gw.client.send(new EncryptCommand({ KeyId: crypto.randomUUID(), Plaintext: message }))],
        ['Decrypt naming the wrong KeyId', () => gw.client.send(new DecryptCommand({ KeyId: hmac, CiphertextBlob: blob, EncryptionContext: { purpose: 'test' } }))],
      ];
      for (let round = 0; round < 3; round++) {
        for (const [what, send] of bad) {
          const status = await statusOf(send());
          assert.ok(status >= 400 && status < 500, `${what}: ${status}`);
        }
      }
      // HMAC verification never asks C_Verify, so a good MAC still verifies on such a token.
      assert.equal((await gw.client.send(new VerifyMacCommand({ KeyId: hmac, Message: message, Mac: mac, MacAlgorithm: 'HMAC_SHA_256' }))).MacValid, true);
      assert.deepEqual(Buffer.from((await gw.client.send(new DecryptCommand({ CiphertextBlob: blob, EncryptionContext: { purpose: 'test' } }))).Plaintext!), message);
      await assertStillUp(gw, 'a run of bad client requests');
    }));
});
