import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import * as kms from '@aws-sdk/client-kms';
import { wrapKeyMaterial } from './import-wrap';

/** 'works', 'unsupported: <the gateway's message>', or 'FAILED: …' (anything else). */
export type StepOutcome = string;

/**
 * One KMS operation as the token matrix runs it. `needs`: keys made by earlier steps (by name in
 * the state map); a step whose key the token could not make is reported unsupported without running.
 * A step that makes a key records its id under its own name.
 */
export interface MatrixStep {
  name: string;
  needs?: string[];
  run(client: kms.KMSClient, state: Map<string, string>): Promise<void>;
}

const bytes = (s: string) => Buffer.from(s);

function createKey(name: string, input: kms.CreateKeyCommandInput): MatrixStep {
  return {
    name,
    run: async (c, state) => {
      const out = await c.send(new kms.CreateKeyCommand(input));
      state.set(name, out.KeyMetadata!.KeyId!);
    },
  };
}

function signVerify(name: string, key: string, algorithm: kms.SigningAlgorithmSpec): MatrixStep {
  return {
    name,
    needs: [key],
    run: async (c, state) => {
      const KeyId = state.get(key)!;
      const Message = bytes(`message for ${algorithm}`);
      const { Signature } = await c.send(new kms.SignCommand({ KeyId, Message, SigningAlgorithm: algorithm }));
      assert.equal((await c.send(new kms.VerifyCommand({ KeyId, Message, Signature, SigningAlgorithm: algorithm }))).SignatureValid, true);
      const bad = Buffer.from(Signature!);
      bad[bad.length - 1] ^= 1;
      await assert.rejects(c.send(new kms.VerifyCommand({ KeyId, Message, Signature: bad, SigningAlgorithm: algorithm })), kms.KMSInvalidSignatureException);
      const { PublicKey } = await c.send(new kms.GetPublicKeyCommand({ KeyId }));
      crypto.createPublicKey({ key: Buffer.from(PublicKey!), format: 'der', type: 'spki' });
    },
  };
}

function macs(name: string, key: string, algorithm: kms.MacAlgorithmSpec): MatrixStep {
  return {
    name,
    needs: [key],
    run: async (c, state) => {
      const KeyId = state.get(key)!;
      const Message = bytes('mac me');
      const { Mac } = await c.send(new kms.GenerateMacCommand({ KeyId, Message, MacAlgorithm: algorithm }));
      assert.equal((await c.send(new kms.VerifyMacCommand({ KeyId, Message, Mac, MacAlgorithm: algorithm }))).MacValid, true);
      const bad = Buffer.from(Mac!);
      bad[0] ^= 1;
      await assert.rejects(c.send(new kms.VerifyMacCommand({ KeyId, Message, Mac: bad, MacAlgorithm: algorithm })), kms.KMSInvalidMacException);
    },
  };
}

function rsaEncrypt(name: string, algorithm: kms.EncryptionAlgorithmSpec): MatrixStep {
  return {
    name,
    needs: ['CreateKey RSA_2048 ENCRYPT_DECRYPT'],
    run: async (c, state) => {
      const KeyId = state.get('CreateKey RSA_2048 ENCRYPT_DECRYPT')!;
      const { CiphertextBlob } = await c.send(new kms.EncryptCommand({ KeyId, Plaintext: bytes('rsa secret'), EncryptionAlgorithm: algorithm }));
      const out = await c.send(new kms.DecryptCommand({ KeyId, CiphertextBlob, EncryptionAlgorithm: algorithm }));
      assert.equal(Buffer.from(out.Plaintext!).toString(), 'rsa secret');
    },
  };
}

const SYMMETRIC = 'CreateKey SYMMETRIC_DEFAULT';

/** BYOK as a caller does it: GetParametersForImport, the material wrapped here, ImportKeyMaterial. */
async function importMaterial(c: kms.KMSClient, KeyId: string, algorithm: kms.AlgorithmSpec, material: Buffer): Promise<void> {
  const params = await c.send(new kms.GetParametersForImportCommand({ KeyId, WrappingAlgorithm: algorithm, WrappingKeySpec: 'RSA_3072' }));
  const EncryptedKeyMaterial = wrapKeyMaterial(params.PublicKey!, algorithm, material);
  await c.send(new kms.ImportKeyMaterialCommand({ KeyId, ImportToken: params.ImportToken, EncryptedKeyMaterial, ExpirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE' }));
}

/** An EXTERNAL key of the spec with material imported by `algorithm`, then used: symmetric round trips, HMAC or signatures checked here. */
export function importStep(name: string, spec: kms.KeySpec, algorithm: kms.AlgorithmSpec): MatrixStep {
  return {
    name,
    run: async (c) => {
      const usage: kms.KeyUsageType = spec === 'SYMMETRIC_DEFAULT' ? 'ENCRYPT_DECRYPT' : spec.startsWith('HMAC') ? 'GENERATE_VERIFY_MAC' : 'SIGN_VERIFY';
      const KeyId = (await c.send(new kms.CreateKeyCommand({ Origin: 'EXTERNAL', KeySpec: spec, KeyUsage: usage }))).KeyMetadata!.KeyId!;
      if (usage === 'ENCRYPT_DECRYPT') {
        await importMaterial(c, KeyId, algorithm, crypto.randomBytes(32));
        const { CiphertextBlob } = await c.send(new kms.EncryptCommand({ KeyId, Plaintext: bytes('imported') }));
        const dataKey = await c.send(new kms.GenerateDataKeyCommand({ KeyId, NumberOfBytes: 32 }));
        assert.equal(Buffer.from((await c.send(new kms.DecryptCommand({ CiphertextBlob }))).Plaintext!).toString(), 'imported');
        assert.deepEqual((await c.send(new kms.DecryptCommand({ CiphertextBlob: dataKey.CiphertextBlob }))).Plaintext, dataKey.Plaintext);
      } else if (usage === 'GENERATE_VERIFY_MAC') {
        const material = crypto.randomBytes(32);
        await importMaterial(c, KeyId, algorithm, material);
        const { Mac } = await c.send(new kms.GenerateMacCommand({ KeyId, Message: bytes('mac me'), MacAlgorithm: 'HMAC_SHA_256' }));
        assert.deepEqual(Buffer.from(Mac!), crypto.createHmac('sha256', material).update('mac me').digest());
      } else {
        const pair = spec === 'RSA_2048' ? crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }) : crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
        await importMaterial(c, KeyId, algorithm, pair.privateKey.export({ type: 'pkcs8', format: 'der' }));
        assert.deepEqual(Buffer.from((await c.send(new kms.GetPublicKeyCommand({ KeyId }))).PublicKey!), pair.publicKey.export({ type: 'spki', format: 'der' }));
        const SigningAlgorithm = spec === 'RSA_2048' ? 'RSASSA_PKCS1_V1_5_SHA_256' : 'ECDSA_SHA_256';
        const { Signature } = await c.send(new kms.SignCommand({ KeyId, Message: bytes('signed'), SigningAlgorithm }));
        assert.ok(crypto.verify('sha256', bytes('signed'), pair.publicKey, Buffer.from(Signature!)));
      }
    },
  };
}

/** The steps, in order; the names are the rows of the table in docs/hsm/README.md. */
export const KMS_OPERATION_STEPS: readonly MatrixStep[] = [
  createKey(SYMMETRIC, {}),
  {
    name: 'Encrypt, Decrypt (context bound)',
    needs: [SYMMETRIC],
    run: async (c, state) => {
      const KeyId = state.get(SYMMETRIC)!;
      const { CiphertextBlob } = await c.send(new kms.EncryptCommand({ KeyId, Plaintext: bytes('x'.repeat(4096)), EncryptionContext: { tenant: 'a' } }));
      const out = await c.send(new kms.DecryptCommand({ CiphertextBlob, EncryptionContext: { tenant: 'a' } }));
      assert.equal(Buffer.from(out.Plaintext!).toString(), 'x'.repeat(4096));
      // A wrong context is the client's mistake: InvalidCiphertextException, and the token stays in service.
      await assert.rejects(c.send(new kms.DecryptCommand({ CiphertextBlob, EncryptionContext: { tenant: 'b' } })), kms.InvalidCiphertextException);
    },
  },
  {
    name: 'GenerateDataKey (1, 32, 1024 bytes), Decrypt',
    needs: [SYMMETRIC],
    run: async (c, state) => {
      const KeyId = state.get(SYMMETRIC)!;
      for (const NumberOfBytes of [1, 32, 1024]) {
        const dk = await c.send(new kms.GenerateDataKeyCommand({ KeyId, NumberOfBytes, EncryptionContext: { n: String(NumberOfBytes) } }));
        assert.equal(dk.Plaintext!.length, NumberOfBytes);
        const out = await c.send(new kms.DecryptCommand({ CiphertextBlob: dk.CiphertextBlob, EncryptionContext: { n: String(NumberOfBytes) } }));
        assert.deepEqual(Buffer.from(out.Plaintext!), Buffer.from(dk.Plaintext!));
        await assert.rejects(c.send(new kms.DecryptCommand({ CiphertextBlob: dk.CiphertextBlob })), kms.InvalidCiphertextException);
      }
    },
  },
  {
    name: 'GenerateDataKeyWithoutPlaintext, ReEncrypt',
    needs: [SYMMETRIC],
    run: async (c, state) => {
      const KeyId = state.get(SYMMETRIC)!;
      const { CiphertextBlob } = await c.send(new kms.GenerateDataKeyWithoutPlaintextCommand({ KeyId, KeySpec: 'AES_256' }));
      const re = await c.send(new kms.ReEncryptCommand({ CiphertextBlob, DestinationKeyId: KeyId, DestinationEncryptionContext: { moved: 'yes' } }));
      assert.equal((await c.send(new kms.DecryptCommand({ CiphertextBlob: re.CiphertextBlob, EncryptionContext: { moved: 'yes' } }))).Plaintext!.length, 32);
    },
  },
  {
    name: 'RotateKeyOnDemand, old ciphertexts decrypt',
    needs: [SYMMETRIC],
    run: async (c, state) => {
      const KeyId = state.get(SYMMETRIC)!;
      const { CiphertextBlob } = await c.send(new kms.EncryptCommand({ KeyId, Plaintext: bytes('before rotation') }));
      await c.send(new kms.RotateKeyOnDemandCommand({ KeyId }));
      assert.equal(Buffer.from((await c.send(new kms.DecryptCommand({ CiphertextBlob }))).Plaintext!).toString(), 'before rotation');
      const after = await c.send(new kms.EncryptCommand({ KeyId, Plaintext: bytes('after rotation') }));
      assert.equal(Buffer.from((await c.send(new kms.DecryptCommand({ CiphertextBlob: after.CiphertextBlob }))).Plaintext!).toString(), 'after rotation');
    },
  },
  { name: 'GenerateRandom (1024 bytes)', run: async (c) => assert.equal((await c.send(new kms.GenerateRandomCommand({ NumberOfBytes: 1024 }))).Plaintext!.length, 1024) },
  {
    name: 'GenerateDataKeyPair RSA_2048',
    needs: [SYMMETRIC],
    run: async (c, state) => {
      const out = await c.send(new kms.GenerateDataKeyPairCommand({ KeyId: state.get(SYMMETRIC)!, KeyPairSpec: 'RSA_2048' }));
      crypto.createPrivateKey({ key: Buffer.from(out.PrivateKeyPlaintext!), format: 'der', type: 'pkcs8' });
      const back = await c.send(new kms.DecryptCommand({ CiphertextBlob: out.PrivateKeyCiphertextBlob }));
      assert.deepEqual(Buffer.from(back.Plaintext!), Buffer.from(out.PrivateKeyPlaintext!));
    },
  },
  {
    name: 'GenerateDataKeyPair ECC_NIST_P256',
    needs: [SYMMETRIC],
    run: async (c, state) => {
      const out = await c.send(new kms.GenerateDataKeyPairCommand({ KeyId: state.get(SYMMETRIC)!, KeyPairSpec: 'ECC_NIST_P256' }));
      crypto.createPrivateKey({ key: Buffer.from(out.PrivateKeyPlaintext!), format: 'der', type: 'pkcs8' });
    },
  },
  createKey('CreateKey HMAC_224', { KeySpec: 'HMAC_224', KeyUsage: 'GENERATE_VERIFY_MAC' }),
  macs('GenerateMac, VerifyMac HMAC_SHA_224', 'CreateKey HMAC_224', 'HMAC_SHA_224'),
  createKey('CreateKey HMAC_256', { KeySpec: 'HMAC_256', KeyUsage: 'GENERATE_VERIFY_MAC' }),
  macs('GenerateMac, VerifyMac HMAC_SHA_256', 'CreateKey HMAC_256', 'HMAC_SHA_256'),
  createKey('CreateKey HMAC_512', { KeySpec: 'HMAC_512', KeyUsage: 'GENERATE_VERIFY_MAC' }),
  macs('GenerateMac, VerifyMac HMAC_SHA_512', 'CreateKey HMAC_512', 'HMAC_SHA_512'),
  createKey('CreateKey RSA_2048 SIGN_VERIFY', { KeySpec: 'RSA_2048', KeyUsage: 'SIGN_VERIFY' }),
  signVerify('Sign, Verify RSASSA_PSS_SHA_256', 'CreateKey RSA_2048 SIGN_VERIFY', 'RSASSA_PSS_SHA_256'),
  signVerify('Sign, Verify RSASSA_PKCS1_V1_5_SHA_512', 'CreateKey RSA_2048 SIGN_VERIFY', 'RSASSA_PKCS1_V1_5_SHA_512'),
  createKey('CreateKey RSA_2048 ENCRYPT_DECRYPT', { KeySpec: 'RSA_2048', KeyUsage: 'ENCRYPT_DECRYPT' }),
  rsaEncrypt('Encrypt, Decrypt RSAES_OAEP_SHA_1', 'RSAES_OAEP_SHA_1'),
  rsaEncrypt('Encrypt, Decrypt RSAES_OAEP_SHA_256', 'RSAES_OAEP_SHA_256'),
  createKey('CreateKey ECC_NIST_P256 SIGN_VERIFY', { KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' }),
  signVerify('Sign, Verify ECDSA_SHA_256', 'CreateKey ECC_NIST_P256 SIGN_VERIFY', 'ECDSA_SHA_256'),
  createKey('CreateKey ECC_NIST_P384 SIGN_VERIFY', { KeySpec: 'ECC_NIST_P384', KeyUsage: 'SIGN_VERIFY' }),
  createKey('CreateKey ECC_NIST_P521 SIGN_VERIFY', { KeySpec: 'ECC_NIST_P521', KeyUsage: 'SIGN_VERIFY' }),
  createKey('CreateKey ECC_SECG_P256K1 SIGN_VERIFY', { KeySpec: 'ECC_SECG_P256K1', KeyUsage: 'SIGN_VERIFY' }),
  signVerify('Sign, Verify ECDSA_SHA_256 on secp256k1', 'CreateKey ECC_SECG_P256K1 SIGN_VERIFY', 'ECDSA_SHA_256'),
  createKey('CreateKey ECC_NIST_EDWARDS25519', { KeySpec: 'ECC_NIST_EDWARDS25519', KeyUsage: 'SIGN_VERIFY' }),
  signVerify('Sign, Verify ED25519_SHA_512', 'CreateKey ECC_NIST_EDWARDS25519', 'ED25519_SHA_512'),
  createKey('CreateKey ECC_NIST_P256 KEY_AGREEMENT', { KeySpec: 'ECC_NIST_P256', KeyUsage: 'KEY_AGREEMENT' }),
  {
    name: 'DeriveSharedSecret',
    needs: ['CreateKey ECC_NIST_P256 KEY_AGREEMENT'],
    run: async (c, state) => {
      const KeyId = state.get('CreateKey ECC_NIST_P256 KEY_AGREEMENT')!;
      const peer = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const out = await c.send(new kms.DeriveSharedSecretCommand({ KeyId, KeyAgreementAlgorithm: 'ECDH', PublicKey: peer.publicKey.export({ type: 'spki', format: 'der' }) }));
      const { PublicKey } = await c.send(new kms.GetPublicKeyCommand({ KeyId }));
      const ours = crypto.diffieHellman({ privateKey: peer.privateKey, publicKey: crypto.createPublicKey({ key: Buffer.from(PublicKey!), format: 'der', type: 'spki' }) });
      assert.deepEqual(Buffer.from(out.SharedSecret!), ours);
    },
  },
  importStep('Import SYMMETRIC_DEFAULT material (RSAES_OAEP_SHA_1), Encrypt, GenerateDataKey, Decrypt', 'SYMMETRIC_DEFAULT', 'RSAES_OAEP_SHA_1'),
  importStep('Import SYMMETRIC_DEFAULT material (RSAES_OAEP_SHA_256)', 'SYMMETRIC_DEFAULT', 'RSAES_OAEP_SHA_256'),
  importStep('Import SYMMETRIC_DEFAULT material (RSA_AES_KEY_WRAP_SHA_256)', 'SYMMETRIC_DEFAULT', 'RSA_AES_KEY_WRAP_SHA_256'),
  importStep('Import HMAC_256 material (RSAES_OAEP_SHA_1), GenerateMac', 'HMAC_256', 'RSAES_OAEP_SHA_1'),
  importStep('Import RSA_2048 private key (RSA_AES_KEY_WRAP_SHA_1), Sign', 'RSA_2048', 'RSA_AES_KEY_WRAP_SHA_1'),
  importStep('Import ECC_NIST_P256 private key (RSAES_OAEP_SHA_1), Sign', 'ECC_NIST_P256', 'RSAES_OAEP_SHA_1'),
  {
    // No PKCS#11 call of their own but the HMACs of pagination markers and audit batches: they
    // prove the internal MAC keys on this token.
    name: 'Key metadata, aliases, tags, policies, grants, ListKeys pages',
    needs: [SYMMETRIC],
    run: async (c, state) => {
      const KeyId = state.get(SYMMETRIC)!;
      await c.send(new kms.CreateAliasCommand({ AliasName: 'alias/matrix', TargetKeyId: KeyId }));
      assert.equal((await c.send(new kms.DescribeKeyCommand({ KeyId: 'alias/matrix' }))).KeyMetadata!.KeyId, KeyId);
      await c.send(new kms.TagResourceCommand({ KeyId, Tags: [{ TagKey: 'team', TagValue: 'matrix' }] }));
      assert.equal((await c.send(new kms.ListResourceTagsCommand({ KeyId }))).Tags!.length, 1);
      await c.send(new kms.UpdateKeyDescriptionCommand({ KeyId, Description: 'token matrix' }));
      const policy = (await c.send(new kms.GetKeyPolicyCommand({ KeyId, PolicyName: 'default' }))).Policy!;
      await c.send(new kms.PutKeyPolicyCommand({ KeyId, PolicyName: 'default', Policy: policy }));
      const grant = await c.send(new kms.CreateGrantCommand({ KeyId, GranteePrincipal: 'arn:aws:iam::111122223333:role/matrix', Operations: ['Decrypt'] }));
      assert.equal((await c.send(new kms.ListGrantsCommand({ KeyId }))).Grants!.length, 1);
      await c.send(new kms.RevokeGrantCommand({ KeyId, GrantId: grant.GrantId }));
      await c.send(new kms.DisableKeyCommand({ KeyId }));
      await c.send(new kms.EnableKeyCommand({ KeyId }));
      await c.send(new kms.EnableKeyRotationCommand({ KeyId }));
      assert.equal((await c.send(new kms.GetKeyRotationStatusCommand({ KeyId }))).KeyRotationEnabled, true);
      await c.send(new kms.ListKeyRotationsCommand({ KeyId }));
      const first = await c.send(new kms.ListKeysCommand({ Limit: 1 }));
      assert.ok(first.Truncated && first.NextMarker);
      assert.equal((await c.send(new kms.ListKeysCommand({ Limit: 1, Marker: first.NextMarker }))).Keys!.length, 1);
      await assert.rejects(c.send(new kms.ListKeysCommand({ Limit: 1, Marker: `${first.NextMarker!.slice(0, -2)}AA` })), kms.InvalidMarkerException);
      await c.send(new kms.DeleteAliasCommand({ AliasName: 'alias/matrix' }));
    },
  },
  {
    name: 'ScheduleKeyDeletion, CancelKeyDeletion',
    needs: [SYMMETRIC],
    run: async (c, state) => {
      const KeyId = state.get(SYMMETRIC)!;
      await c.send(new kms.ScheduleKeyDeletionCommand({ KeyId, PendingWindowInDays: 7 }));
      await c.send(new kms.CancelKeyDeletionCommand({ KeyId }));
    },
  },
];
