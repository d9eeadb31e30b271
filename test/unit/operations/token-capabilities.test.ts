import assert from 'node:assert/strict';
import { BlobMechanism } from '../../../src/domain/ciphertext-blob';
import { Envelope, envelopeModes } from '../../../src/domain/envelope';
import * as E from '../../../src/errors/kms-errors';
import { coreProblems, dataKeyWrapModes } from '../../../src/hsm/capabilities';
import { registry } from '../../../src/operations/registry';
import { validateInput } from '../../../src/operations/validate-input';
import { fullCapabilities, withRawRsaOaep } from '../../support/fake-hsm';
import { operationContext, unitDeps } from '../../support/unit-deps';

type Deps = Awaited<ReturnType<typeof unitDeps>>;

const call = (name: string, body: unknown, deps: Deps) => {
  const op = registry.get(name)!;
  return op.handle(validateInput(op.schema, body), operationContext(deps)) as Promise<Record<string, any>>;
};

/** A gateway over a fake token that lacks the given capabilities, its envelope chosen as the gateway chooses it. */
async function depsWithout(...missing: Parameters<typeof fullCapabilities>): Promise<Deps> {
  const deps = await unitDeps();
  deps.fake.caps = fullCapabilities(...missing);
  deps.envelope = new Envelope(deps.fake, envelopeModes(deps.fake.caps));
  return deps;
}

const b64 = (s: string) => Buffer.from(s).toString('base64');

describe('What the token can do decides what is served', () => {
  it('a token with neither GCM nor an exact RFC 5649 wrap seals Encrypt and data keys as AES-CBC + HMAC blobs, which round-trip and detect tampering', async () => {
    const deps = await depsWithout('aes-gcm', 'aes-gcm-wrap', 'aes-kwp');
    const keyId = (await call('CreateKey', {}, deps)).KeyMetadata.KeyId;
    const enc = await call('Encrypt', { KeyId: keyId, Plaintext: b64('hello'), EncryptionContext: { a: 'b' } }, deps);
    const blob = Buffer.from(enc.CiphertextBlob, 'base64');
    assert.equal(blob[1], BlobMechanism.AesCbcHmac);
    assert.equal((await call('Decrypt', { CiphertextBlob: enc.CiphertextBlob, EncryptionContext: { a: 'b' } }, deps)).Plaintext, b64('hello'));
    await assert.rejects(call('Decrypt', { CiphertextBlob: enc.CiphertextBlob, EncryptionContext: { a: 'c' } }, deps), E.InvalidCiphertextException);
    for (let at = 22; at < blob.length; at++) {
      const bad = Buffer.from(blob);
      bad[at] ^= 1;
      await assert.rejects(call('Decrypt', { CiphertextBlob: bad.toString('base64'), EncryptionContext: { a: 'b' } }, deps), E.InvalidCiphertextException, `byte ${at}`);
    }
    for (const bytes of [1, 17, 1024]) {
      const dk = await call('GenerateDataKey', { KeyId: keyId, NumberOfBytes: bytes }, deps);
      assert.equal(Buffer.from(dk.CiphertextBlob, 'base64')[1], BlobMechanism.AesCbcHmac);
      assert.equal(Buffer.from(dk.Plaintext, 'base64').length, bytes);
      assert.equal((await call('Decrypt', { CiphertextBlob: dk.CiphertextBlob }, deps)).Plaintext, dk.Plaintext);
    }
  });

  it('data keys longer than the token generates as key objects fall back to AES-CBC + HMAC; shorter ones use KWP', async () => {
    const deps = await unitDeps();
    deps.fake.caps = { ...fullCapabilities(), genericSecretBytes: { min: 10, max: 256 } };
    deps.envelope = new Envelope(deps.fake, envelopeModes(deps.fake.caps));
    const keyId = (await call('CreateKey', {}, deps)).KeyMetadata.KeyId;
    const mechanismOf = async (bytes: number) => Buffer.from((await call('GenerateDataKey', { KeyId: keyId, NumberOfBytes: bytes }, deps)).CiphertextBlob, 'base64')[1];
    assert.equal(await mechanismOf(32), BlobMechanism.AesKwpHmac);
    assert.equal(await mechanismOf(1024), BlobMechanism.AesCbcHmac);
    assert.equal(await mechanismOf(1), BlobMechanism.AesCbcHmac);
    // With the construction pinned to KWP there is no fallback: the token's limit is the answer.
    deps.envelope = new Envelope(deps.fake, envelopeModes(deps.fake.caps, 'AES_KWP_HMAC'));
    await assert.rejects(call('GenerateDataKey', { KeyId: keyId, NumberOfBytes: 1024 }, deps), (e: Error) => e instanceof E.UnsupportedOperationException && /10 to 256 bytes/.test(e.message));
  });

  it('CreateKey of a spec the token cannot make, and an algorithm it lacks, are UnsupportedOperationException naming the mechanism', async () => {
    const deps = await depsWithout('ec-secp256k1', 'hmac-sha224', 'rsa-pss', 'ed25519', 'rsa-oaep-sha256');
    deps.fake.caps.checks['ec-secp256k1'].mechanism = 'CKM_EC_KEY_PAIR_GEN';
    const refused = (re: RegExp) => (e: Error) => e instanceof E.UnsupportedOperationException && re.test(e.message);
    await assert.rejects(call('CreateKey', { KeySpec: 'ECC_SECG_P256K1', KeyUsage: 'SIGN_VERIFY' }, deps), refused(/ECC_SECG_P256K1.*CKM_EC_KEY_PAIR_GEN/));
    await assert.rejects(call('CreateKey', { KeySpec: 'HMAC_224', KeyUsage: 'GENERATE_VERIFY_MAC' }, deps), refused(/HMAC_224/));
    await assert.rejects(call('CreateKey', { KeySpec: 'ECC_NIST_EDWARDS25519', KeyUsage: 'SIGN_VERIFY' }, deps), refused(/EDWARDS25519/));
    const rsa = (await call('CreateKey', { KeySpec: 'RSA_2048', KeyUsage: 'SIGN_VERIFY' }, deps)).KeyMetadata.KeyId;
    await assert.rejects(call('Sign', { KeyId: rsa, Message: b64('m'), SigningAlgorithm: 'RSASSA_PSS_SHA_256' }, deps), refused(/RSASSA_PSS_SHA_256/));
    assert.ok((await call('Sign', { KeyId: rsa, Message: b64('m'), SigningAlgorithm: 'RSASSA_PKCS1_V1_5_SHA_256' }, deps)).Signature);
    const rsaEnc = (await call('CreateKey', { KeySpec: 'RSA_2048', KeyUsage: 'ENCRYPT_DECRYPT' }, deps)).KeyMetadata.KeyId;
    await assert.rejects(call('Encrypt', { KeyId: rsaEnc, Plaintext: b64('m'), EncryptionAlgorithm: 'RSAES_OAEP_SHA_256' }, deps), refused(/RSAES_OAEP_SHA_256/));
    assert.ok((await call('Encrypt', { KeyId: rsaEnc, Plaintext: b64('m'), EncryptionAlgorithm: 'RSAES_OAEP_SHA_1' }, deps)).CiphertextBlob);
    await assert.rejects(call('GenerateDataKeyPair', { KeyId: (await call('CreateKey', {}, deps)).KeyMetadata.KeyId, KeyPairSpec: 'ECC_SECG_P256K1' }, deps), refused(/ECC_SECG_P256K1/));
  });

  it('RSAES_OAEP_SHA_256 as raw RSA (a token like SoftHSM2): new keys round-trip; a key whose private object does not allow raw RSA refuses Encrypt and Decrypt saying why', async () => {
    const deps = await unitDeps();
    deps.fake.caps = withRawRsaOaep(fullCapabilities());
    const algorithm = { EncryptionAlgorithm: 'RSAES_OAEP_SHA_256' };
    const newKey = async () => (await call('CreateKey', { KeySpec: 'RSA_2048', KeyUsage: 'ENCRYPT_DECRYPT' }, deps)).KeyMetadata.KeyId as string;
    const key = await newKey();
    const sealed = await call('Encrypt', { KeyId: key, Plaintext: b64('m'), ...algorithm }, deps);
    assert.equal((await call('Decrypt', { KeyId: key, CiphertextBlob: sealed.CiphertextBlob, ...algorithm }, deps)).Plaintext, b64('m'));
    const bad = Buffer.from(sealed.CiphertextBlob, 'base64');
    bad[9] ^= 1;
    await assert.rejects(call('Decrypt', { KeyId: key, CiphertextBlob: bad.toString('base64'), ...algorithm }, deps), E.InvalidCiphertextException);

    const old = await newKey();
    const material = (await deps.keys.getMaterial(old, (await deps.keys.getKey(old))!.currentMaterialVersion))!;
    deps.fake.limitMechanisms(material.objects.private, ['CKM_RSA_PKCS_OAEP']);
    const sha1 = await call('Encrypt', { KeyId: old, Plaintext: b64('m'), EncryptionAlgorithm: 'RSAES_OAEP_SHA_1' }, deps);
    const why = (e: Error) => e instanceof E.UnsupportedOperationException && /RSAES_OAEP_SHA_256: .*CKM_RSA_X_509.*allows only CKM_RSA_PKCS_OAEP.*RSAES_OAEP_SHA_1/.test(e.message);
    await assert.rejects(call('Encrypt', { KeyId: old, Plaintext: b64('m'), ...algorithm }, deps), why, 'no ciphertext that could not be decrypted');
    await assert.rejects(call('Decrypt', { KeyId: old, CiphertextBlob: sealed.CiphertextBlob, ...algorithm }, deps), why);
    await assert.rejects(call('ReEncrypt', { CiphertextBlob: sha1.CiphertextBlob, SourceKeyId: old, SourceEncryptionAlgorithm: 'RSAES_OAEP_SHA_1', DestinationKeyId: old, DestinationEncryptionAlgorithm: 'RSAES_OAEP_SHA_256' }, deps), why);
    assert.equal((await call('Decrypt', { KeyId: old, CiphertextBlob: sha1.CiphertextBlob, EncryptionAlgorithm: 'RSAES_OAEP_SHA_1' }, deps)).Plaintext, b64('m'), 'SHA-1 still works');
    // The size comes before what the key or token lacks, as AWS checks it.
    await assert.rejects(call('Encrypt', { KeyId: old, Plaintext: Buffer.alloc(191).toString('base64'), ...algorithm }, deps), (e: Error) => e instanceof E.ValidationException && /RSAES_OAEP_SHA_256 and key spec RSA_2048 cannot encrypt data larger than 190 bytes\./.test(e.message));
    deps.fake.caps = fullCapabilities('rsa-oaep-sha256');
    await assert.rejects(call('Encrypt', { KeyId: key, Plaintext: Buffer.alloc(191).toString('base64'), ...algorithm }, deps), E.ValidationException);
    await assert.rejects(call('Encrypt', { KeyId: key, Plaintext: Buffer.alloc(190).toString('base64'), ...algorithm }, deps), E.UnsupportedOperationException);
  });

  it('GenerateDataKeyPair needs only the pair\'s generation: a token without ECDSA still makes an ECC data key pair, not one without the curve', async () => {
    const deps = await depsWithout('ecdsa', 'ecdh', 'ec-p384');
    const keyId = (await call('CreateKey', {}, deps)).KeyMetadata.KeyId;
    assert.ok((await call('GenerateDataKeyPair', { KeyId: keyId, KeyPairSpec: 'ECC_NIST_P256' }, deps)).PrivateKeyCiphertextBlob);
    await assert.rejects(call('GenerateDataKeyPair', { KeyId: keyId, KeyPairSpec: 'ECC_NIST_P384' }, deps), E.UnsupportedOperationException);
    await assert.rejects(call('CreateKey', { KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' }, deps), E.UnsupportedOperationException, 'a signing key still needs ECDSA');
  });

  it('the core: without AES token keys, HMAC-SHA-256, randomness or any data-key construction, the start is refused with the mechanism named', () => {
    assert.deepEqual(coreProblems(fullCapabilities()), []);
    assert.deepEqual(coreProblems(fullCapabilities('aes-gcm', 'aes-kwp', 'aes-gcm-wrap')), [], 'CBC alone serves everything');
    const missingAes = coreProblems({ ...fullCapabilities('aes-token-keys'), checks: { ...fullCapabilities().checks, 'aes-token-keys': { ok: false, mechanism: 'CKM_AES_KEY_GEN', detail: 'is listed but refused: CKR_FUNCTION_NOT_SUPPORTED' } } });
    assert.equal(missingAes.length, 1);
    assert.match(missingAes[0], /CKM_AES_KEY_GEN.*CKR_FUNCTION_NOT_SUPPORTED.*CreateKey SYMMETRIC_DEFAULT/);
    assert.equal(coreProblems(fullCapabilities('aes-gcm', 'aes-cbc')).length, 1);
    assert.match(coreProblems(fullCapabilities('aes-kwp', 'aes-gcm-wrap', 'aes-cbc', 'aes-gcm')).join(' '), /no data-key construction/);
    // GCM encryption alone seals data keys too (AES_GCM_ENCRYPT).
    assert.deepEqual(dataKeyWrapModes(fullCapabilities('aes-kwp', 'aes-gcm-wrap', 'aes-cbc')), ['AES_GCM_ENCRYPT']);
    assert.match(coreProblems(fullCapabilities('aes-gcm-wrap'), 'AES_GCM')[0], /QKMS_DATA_KEY_WRAP=AES_GCM.*AES_KWP_HMAC, AES_CBC_HMAC/);
    // Wrapping needs generated key objects whose value can be read.
    assert.deepEqual(dataKeyWrapModes({ ...fullCapabilities(), genericSecretBytes: undefined }), ['AES_CBC_HMAC', 'AES_GCM_ENCRYPT']);
  });
});
