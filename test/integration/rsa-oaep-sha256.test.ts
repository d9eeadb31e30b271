import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import { promisify } from 'node:util';
import {
  CreateKeyCommand,
  DecryptCommand,
  EncryptCommand,
  GenerateMacCommand,
  GetParametersForImportCommand,
  GetPublicKeyCommand,
  ImportKeyMaterialCommand,
  InvalidCiphertextException,
  ReEncryptCommand,
  UnsupportedOperationException,
  type KMSClient,
} from '@aws-sdk/client-kms';
import { wrapKeyMaterial } from '../support/import-wrap';
import { integration } from '../support/integration-hooks';
import { startGateway, TEST_CREDENTIALS, type Harness } from '../support/harness';

const run = promisify(execFile);

/**
 * RSAES_OAEP_SHA_256 on SoftHSM2, whose CKM_RSA_PKCS_OAEP has SHA-1 only: raw RSA with the private
 * key in the HSM and the OAEP padding checked in the gateway (src/hsm/pkcs11/rsa-oaep-ops.ts),
 * through two unmodified clients, @aws-sdk/client-kms and boto3. Ciphertexts made outside (node:crypto
 * with GetPublicKey's key) prove it is standard OAEP-SHA-256 with MGF1-SHA-256 and an empty label.
 */

const LIMITS = { RSA_2048: 190, RSA_3072: 318, RSA_4096: 446 } as const;

const outsideEncrypt = async (client: KMSClient, keyId: string, plaintext: Buffer, hash: 'sha1' | 'sha256') => {
  const spki = Buffer.from((await client.send(new GetPublicKeyCommand({ KeyId: keyId }))).PublicKey!);
  return crypto.publicEncrypt({ key: crypto.createPublicKey({ key: spki, format: 'der', type: 'spki' }), padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: hash }, plaintext);
};

const newRsaKey = async (client: KMSClient, keySpec: keyof typeof LIMITS = 'RSA_2048') =>
  (await client.send(new CreateKeyCommand({ KeySpec: keySpec, KeyUsage: 'ENCRYPT_DECRYPT' }))).KeyMetadata!.KeyId!;

describe('RSAES_OAEP_SHA_256 on SoftHSM2 (raw RSA in the HSM, OAEP decoded in the gateway)', function () {
  this.timeout(90000); // RSA-4096 generation on SoftHSM2 takes seconds
  let gw: Harness;
  before(async function () {
    assert.equal(integration().hsm.capabilities().rsaOaepSha256, 'raw-rsa', 'capability discovery found the raw route on SoftHSM2');
    gw = await startGateway(integration().hsm);
  });
  after(() => gw?.close());

  for (const keySpec of Object.keys(LIMITS) as Array<keyof typeof LIMITS>) {
    it(`${keySpec}: Encrypt and Decrypt round-trip up to AWS's limit; node:crypto's ciphertext decrypts; tampered is InvalidCiphertextException; SHA-1 still works`, async () => {
      const { client } = gw;
      const keyId = await newRsaKey(client, keySpec);
      const limit = LIMITS[keySpec];
      const k = Number(keySpec.slice(4)) / 8;
      for (const plaintext of [crypto.randomBytes(1), crypto.randomBytes(limit)]) {
        const out = await client.send(new EncryptCommand({ KeyId: keyId, Plaintext: plaintext, EncryptionAlgorithm: 'RSAES_OAEP_SHA_256' }));
        assert.equal(out.EncryptionAlgorithm, 'RSAES_OAEP_SHA_256');
        assert.equal(out.CiphertextBlob!.length, k, 'the raw OAEP output, as AWS returns it');
        const back = await client.send(new DecryptCommand({ KeyId: keyId, CiphertextBlob: out.CiphertextBlob, EncryptionAlgorithm: 'RSAES_OAEP_SHA_256' }));
        assert.deepEqual([Buffer.from(back.Plaintext!), back.EncryptionAlgorithm], [plaintext, 'RSAES_OAEP_SHA_256']);
      }
      const outside = await outsideEncrypt(client, keyId, Buffer.from('made outside'), 'sha256');
      const fromOutside = await client.send(new DecryptCommand({ KeyId: keyId, CiphertextBlob: outside, EncryptionAlgorithm: 'RSAES_OAEP_SHA_256' }));
      assert.equal(Buffer.from(fromOutside.Plaintext!).toString(), 'made outside');
      for (const at of [0, 1, 40, k - 1]) {
        const tampered = Buffer.from(outside);
        tampered[at] ^= 0x01;
        await assert.rejects(client.send(new DecryptCommand({ KeyId: keyId, CiphertextBlob: tampered, EncryptionAlgorithm: 'RSAES_OAEP_SHA_256' })), InvalidCiphertextException, `byte ${at}`);
      }
      await assert.rejects(client.send(new DecryptCommand({ KeyId: keyId, CiphertextBlob: outside.subarray(1), EncryptionAlgorithm: 'RSAES_OAEP_SHA_256' })), InvalidCiphertextException, 'a byte short');
      const sha1 = await outsideEncrypt(client, keyId, Buffer.from('sha-1'), 'sha1');
      await assert.rejects(client.send(new DecryptCommand({ KeyId: keyId, CiphertextBlob: sha1, EncryptionAlgorithm: 'RSAES_OAEP_SHA_256' })), InvalidCiphertextException, 'an OAEP-SHA-1 ciphertext');
      assert.equal(Buffer.from((await client.send(new DecryptCommand({ KeyId: keyId, CiphertextBlob: sha1, EncryptionAlgorithm: 'RSAES_OAEP_SHA_1' }))).Plaintext!).toString(), 'sha-1');
      await assert.rejects(
        client.send(new EncryptCommand({ KeyId: keyId, Plaintext: crypto.randomBytes(limit + 1), EncryptionAlgorithm: 'RSAES_OAEP_SHA_256' })),
        (e: Error) => e.name === 'ValidationException' && e.message === `Algorithm RSAES_OAEP_SHA_256 and key spec ${keySpec} cannot encrypt data larger than ${limit} bytes.`,
      );
    });
  }

  it('the private key allows raw RSA (CKM_RSA_X_509) besides OAEP, and the public key does not (read from the token)', async () => {
    const keyId = await newRsaKey(gw.client);
    const material = (await gw.deps.keys.getMaterial(keyId, (await gw.deps.keys.getKey(keyId))!.currentMaterialVersion))!;
    const [privateKey] = await gw.deps.hsm.inspectKeyObjects(material.objects.private);
    const [publicKey] = await gw.deps.hsm.inspectKeyObjects(material.objects.public);
    assert.deepEqual([privateKey.objectClass, [...privateKey.allowedMechanisms!].sort()], ['CKO_PRIVATE_KEY', ['CKM_RSA_PKCS_OAEP', 'CKM_RSA_X_509']]);
    assert.deepEqual([publicKey.objectClass, publicKey.allowedMechanisms], ['CKO_PUBLIC_KEY', ['CKM_RSA_PKCS_OAEP']]);
    assert.deepEqual([privateKey.flags.CKA_SIGN, privateKey.flags.CKA_DECRYPT, privateKey.flags.CKA_SENSITIVE, privateKey.flags.CKA_EXTRACTABLE], [false, true, true, false]);
  });

  it('ReEncrypt: symmetric → RSA (SHA-256) → another RSA key (SHA-256) → RSA (SHA-1) → symmetric', async () => {
    const { client } = gw;
    const [a, b] = [await newRsaKey(client), await newRsaKey(client)];
    const aes = (await client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    const secret = Buffer.from('moved between keys');
    const fromAes = (await client.send(new EncryptCommand({ KeyId: aes, Plaintext: secret, EncryptionContext: { c: '1' } }))).CiphertextBlob!;
    const toA = await client.send(new ReEncryptCommand({ CiphertextBlob: fromAes, SourceEncryptionContext: { c: '1' }, DestinationKeyId: a, DestinationEncryptionAlgorithm: 'RSAES_OAEP_SHA_256' }));
    assert.equal(toA.DestinationEncryptionAlgorithm, 'RSAES_OAEP_SHA_256');
    const toB = await client.send(new ReEncryptCommand({ CiphertextBlob: toA.CiphertextBlob, SourceKeyId: a, SourceEncryptionAlgorithm: 'RSAES_OAEP_SHA_256', DestinationKeyId: b, DestinationEncryptionAlgorithm: 'RSAES_OAEP_SHA_256' }));
    assert.deepEqual([toB.SourceEncryptionAlgorithm, toB.DestinationEncryptionAlgorithm], ['RSAES_OAEP_SHA_256', 'RSAES_OAEP_SHA_256']);
    const toA1 = await client.send(new ReEncryptCommand({ CiphertextBlob: toB.CiphertextBlob, SourceKeyId: b, SourceEncryptionAlgorithm: 'RSAES_OAEP_SHA_256', DestinationKeyId: a, DestinationEncryptionAlgorithm: 'RSAES_OAEP_SHA_1' }));
    const back = await client.send(new ReEncryptCommand({ CiphertextBlob: toA1.CiphertextBlob, SourceKeyId: a, SourceEncryptionAlgorithm: 'RSAES_OAEP_SHA_1', DestinationKeyId: aes }));
    assert.deepEqual(Buffer.from((await client.send(new DecryptCommand({ CiphertextBlob: back.CiphertextBlob }))).Plaintext!), secret);
    const tampered = Buffer.from(toB.CiphertextBlob!);
    tampered[7] ^= 0x80;
    await assert.rejects(client.send(new ReEncryptCommand({ CiphertextBlob: tampered, SourceKeyId: b, SourceEncryptionAlgorithm: 'RSAES_OAEP_SHA_256', DestinationKeyId: aes })), InvalidCiphertextException);
  });

  it('BYOK: material wrapped with RSAES_OAEP_SHA_256 or RSA_AES_KEY_WRAP_SHA_256 imports through the same route, exactly; tampered is InvalidCiphertextException', async () => {
    const { client } = gw;
    for (const algorithm of ['RSAES_OAEP_SHA_256', 'RSA_AES_KEY_WRAP_SHA_256'] as const) {
      const KeyId = (await client.send(new CreateKeyCommand({ Origin: 'EXTERNAL', KeySpec: 'HMAC_256', KeyUsage: 'GENERATE_VERIFY_MAC' }))).KeyMetadata!.KeyId!;
      const material = crypto.randomBytes(32);
      const wrap = async () => {
        const params = await client.send(new GetParametersForImportCommand({ KeyId, WrappingAlgorithm: algorithm, WrappingKeySpec: 'RSA_3072' }));
        return { params, encrypted: wrapKeyMaterial(params.PublicKey!, algorithm, material) };
      };
      const bad = await wrap();
      bad.encrypted[5] ^= 0x01;
      const importing = (w: Awaited<ReturnType<typeof wrap>>) =>
        client.send(new ImportKeyMaterialCommand({ KeyId, ImportToken: w.params.ImportToken, EncryptedKeyMaterial: w.encrypted, ExpirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE' }));
      await assert.rejects(importing(bad), InvalidCiphertextException, `${algorithm}: tampered`);
      await importing(await wrap());
      const { Mac } = await client.send(new GenerateMacCommand({ KeyId, Message: Buffer.from('message'), MacAlgorithm: 'HMAC_SHA_256' }));
      assert.deepEqual(Buffer.from(Mac!), crypto.createHmac('sha256', material).update('message').digest(), algorithm);
    }
  });

  it('boto3: encrypt/decrypt with RSAES_OAEP_SHA_256, a ciphertext made outside, a tampered one, and the size limit', async function () {
    const python = ['/usr/bin/python3', 'python3'].find((py) => spawnSync(py, ['-c', 'import boto3']).status === 0);
    if (!python) this.skip(); // python3-boto3 not installed: .ci/run installs it
    const keyId = await newRsaKey(gw.client);
    const outside = await outsideEncrypt(gw.client, keyId, Buffer.from('made by node'), 'sha256');
    const script = `
import base64, json, sys, boto3
kms = boto3.client('kms', endpoint_url=sys.argv[1], region_name='us-east-1')
key, outside = sys.argv[2], base64.b64decode(sys.argv[3])
alg = 'RSAES_OAEP_SHA_256'
out = {}
ct = kms.encrypt(KeyId=key, Plaintext=b'from boto3', EncryptionAlgorithm=alg)['CiphertextBlob']
out['length'] = len(ct)
out['roundTrip'] = kms.decrypt(KeyId=key, CiphertextBlob=ct, EncryptionAlgorithm=alg)['Plaintext'].decode()
out['outside'] = kms.decrypt(KeyId=key, CiphertextBlob=outside, EncryptionAlgorithm=alg)['Plaintext'].decode()
bad = bytearray(ct); bad[3] ^= 1
try:
    kms.decrypt(KeyId=key, CiphertextBlob=bytes(bad), EncryptionAlgorithm=alg)
except kms.exceptions.InvalidCiphertextException:
    out['tampered'] = 'InvalidCiphertextException'
try:
    kms.encrypt(KeyId=key, Plaintext=b'x' * 191, EncryptionAlgorithm=alg)
except kms.exceptions.ClientError as e:
    out['oversize'] = [e.response['Error']['Code'], e.response['Error']['Message']]
print(json.dumps(out))
`;
    const env = { ...process.env, AWS_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey, AWS_EC2_METADATA_DISABLED: 'true' };
    const out = JSON.parse((await run(python!, ['-c', script, gw.url, keyId, outside.toString('base64')], { env })).stdout);
    assert.deepEqual(out, {
      length: 256,
      roundTrip: 'from boto3',
      outside: 'made by node',
      tampered: 'InvalidCiphertextException',
      oversize: ['ValidationException', 'Algorithm RSAES_OAEP_SHA_256 and key spec RSA_2048 cannot encrypt data larger than 190 bytes.'],
    });
  });
});

describe('RSAES_OAEP_SHA_256 with a key made before the gateway did it (its private key does not allow raw RSA)', function () {
  this.timeout(60000);
  let gw: Harness;
  before(async () => {
    gw = await startGateway(integration().hsm, {}, { single: "makes a key as earlier releases did, by what this process's token reports" });
  });
  after(() => gw?.close());

  /**
   * A key as releases before this one made it: CreateKey while the token's capabilities do not
   * mention the raw route, so the template allows CKM_RSA_PKCS_OAEP only (templates.ts), and the
   * token keeps it so (CKA_MODIFIABLE false).
   */
  async function keyOfAnEarlierRelease(): Promise<string> {
    const caps = integration().hsm.capabilities();
    const how = caps.rsaOaepSha256;
    caps.rsaOaepSha256 = undefined;
    try {
      return await newRsaKey(gw.client);
    } finally {
      caps.rsaOaepSha256 = how;
    }
  }

  it('Encrypt and Decrypt with SHA-256 both answer UnsupportedOperationException saying why; SHA-1 works; the size check comes first', async () => {
    const { client } = gw;
    const keyId = await keyOfAnEarlierRelease();
    const material = (await gw.deps.keys.getMaterial(keyId, (await gw.deps.keys.getKey(keyId))!.currentMaterialVersion))!;
    assert.deepEqual((await gw.deps.hsm.inspectKeyObjects(material.objects.private))[0].allowedMechanisms, ['CKM_RSA_PKCS_OAEP']);
    const why = (e: Error) =>
      e instanceof UnsupportedOperationException &&
      /^RSAES_OAEP_SHA_256: this HSM does OAEP with SHA-256 as raw RSA \(CKM_RSA_X_509\) .* allows only CKM_RSA_PKCS_OAEP: it was made before QKMS did so; use RSAES_OAEP_SHA_1 with it, or a new key\.$/.test(e.message);
    await assert.rejects(client.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('m'), EncryptionAlgorithm: 'RSAES_OAEP_SHA_256' })), why, 'never a ciphertext that cannot be decrypted');
    const outside = await outsideEncrypt(client, keyId, Buffer.from('m'), 'sha256');
    await assert.rejects(client.send(new DecryptCommand({ KeyId: keyId, CiphertextBlob: outside, EncryptionAlgorithm: 'RSAES_OAEP_SHA_256' })), why);
    await assert.rejects(client.send(new EncryptCommand({ KeyId: keyId, Plaintext: crypto.randomBytes(191), EncryptionAlgorithm: 'RSAES_OAEP_SHA_256' })), /cannot encrypt data larger than 190 bytes\./);
    const sha1 = (await client.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('still'), EncryptionAlgorithm: 'RSAES_OAEP_SHA_1' }))).CiphertextBlob!;
    assert.equal(Buffer.from((await client.send(new DecryptCommand({ KeyId: keyId, CiphertextBlob: sha1, EncryptionAlgorithm: 'RSAES_OAEP_SHA_1' }))).Plaintext!).toString(), 'still');
    await assert.rejects(client.send(new ReEncryptCommand({ CiphertextBlob: sha1, SourceKeyId: keyId, SourceEncryptionAlgorithm: 'RSAES_OAEP_SHA_1', DestinationKeyId: keyId, DestinationEncryptionAlgorithm: 'RSAES_OAEP_SHA_256' })), why);
  });
});
