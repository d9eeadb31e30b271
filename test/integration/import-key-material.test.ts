import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import { promisify } from 'node:util';
import {
  CreateKeyCommand,
  DecryptCommand,
  DeleteImportedKeyMaterialCommand,
  DescribeKeyCommand,
  EncryptCommand,
  GenerateDataKeyCommand,
  GenerateMacCommand,
  GetParametersForImportCommand,
  GetPublicKeyCommand,
  ImportKeyMaterialCommand,
  ListKeyRotationsCommand,
  RotateKeyOnDemandCommand,
  SignCommand,
  type AlgorithmSpec,
  type KeySpec,
  type KeyUsageType,
  type WrappingKeySpec,
} from '@aws-sdk/client-kms';
import { encodeEncryptionContext } from '../../src/domain/encryption-context';
import { integration } from '../support/integration-hooks';
import { wrapKeyMaterial } from '../support/import-wrap';
import { startGateway, TEST_CREDENTIALS, type Harness } from '../support/harness';

const run = promisify(execFile);

const errorName = (name: string) => (e: Error) => e.name === name;

describe('Import key material (BYOK) through the JS SDK v3', function () {
  this.timeout(120000);
  let gw: Harness;
  before(async () => {
    gw = await startGateway(integration().hsm);
  });
  after(() => gw.close());

  async function externalKey(KeySpec: KeySpec = 'SYMMETRIC_DEFAULT', KeyUsage?: KeyUsageType): Promise<string> {
    const { KeyMetadata } = await gw.client.send(new CreateKeyCommand({ Origin: 'EXTERNAL', KeySpec, KeyUsage }));
    assert.equal(KeyMetadata!.KeyState, 'PendingImport');
    assert.equal(KeyMetadata!.Origin, 'EXTERNAL');
    assert.equal(KeyMetadata!.Enabled, false);
    return KeyMetadata!.KeyId!;
  }

  async function importInto(KeyId: string, material: Buffer, options: { algorithm?: AlgorithmSpec; spec?: WrappingKeySpec; extra?: Partial<ConstructorParameters<typeof ImportKeyMaterialCommand>[0]> } = {}) {
    const algorithm = options.algorithm ?? 'RSAES_OAEP_SHA_1';
    const params = await gw.client.send(new GetParametersForImportCommand({ KeyId, WrappingAlgorithm: algorithm, WrappingKeySpec: options.spec ?? 'RSA_2048' }));
    return gw.client.send(new ImportKeyMaterialCommand({
      KeyId, ImportToken: params.ImportToken, EncryptedKeyMaterial: wrapKeyMaterial(params.PublicKey!, algorithm, material), ExpirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE', ...options.extra,
    }));
  }

  /** An Encrypt blob (format 0x02: header, IV, ciphertext ‖ tag; AAD header ‖ context) opened with the material itself: it is the key the HSM used. */
  function openLocally(blob: Uint8Array, material: Buffer): Buffer {
    const b = Buffer.from(blob);
    const header = b.subarray(0, 22);
    const d = crypto.createDecipheriv('aes-256-gcm', material, b.subarray(22, 34)).setAAD(Buffer.concat([header, encodeEncryptionContext({}, 8192)]));
    d.setAuthTag(b.subarray(b.length - 16));
    return Buffer.concat([d.update(b.subarray(34, b.length - 16)), d.final()]);
  }

  it('symmetric: PendingImport until imported, then Encrypt under exactly that material; deleted, then reimported, old ciphertexts decrypt', async () => {
    const KeyId = await externalKey();
    await assert.rejects(gw.client.send(new EncryptCommand({ KeyId, Plaintext: Buffer.from('x') })), (e: Error) => e.name === 'KMSInvalidStateException' && /is pending import\.$/.test(e.message));
    const material = crypto.randomBytes(32);
    const params = await gw.client.send(new GetParametersForImportCommand({ KeyId, WrappingAlgorithm: 'RSAES_OAEP_SHA_1', WrappingKeySpec: 'RSA_2048' }));
    assert.match(params.KeyId!, new RegExp(`key/${KeyId}$`));
    assert.ok(params.ParametersValidTo! > new Date(gw.clock.now.getTime() + 23 * 3600_000));
    const wrapped = wrapKeyMaterial(params.PublicKey!, 'RSAES_OAEP_SHA_1', material);
    await assert.rejects(
      gw.client.send(new ImportKeyMaterialCommand({ KeyId, ImportToken: params.ImportToken, EncryptedKeyMaterial: wrapped })),
      (e: Error) => e.name === 'ValidationException' && e.message === 'A validTo date must be set if the ExpirationModel is KEY_MATERIAL_EXPIRES',
    );
    const imported = await gw.client.send(new ImportKeyMaterialCommand({ KeyId, ImportToken: params.ImportToken, EncryptedKeyMaterial: wrapped, ExpirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE' }));
    assert.match(imported.KeyMaterialId!, /^[a-f0-9]{64}$/);
    const described = (await gw.client.send(new DescribeKeyCommand({ KeyId }))).KeyMetadata!;
    assert.equal(described.KeyState, 'Enabled');
    assert.equal(described.ExpirationModel, 'KEY_MATERIAL_DOES_NOT_EXPIRE');
    assert.equal(described.CurrentKeyMaterialId, imported.KeyMaterialId);

    const sealed = await gw.client.send(new EncryptCommand({ KeyId, Plaintext: Buffer.from('imported') }));
    assert.equal(openLocally(sealed.CiphertextBlob!, material).toString(), 'imported');
    const dataKey = await gw.client.send(new GenerateDataKeyCommand({ KeyId, KeySpec: 'AES_256' }));
    assert.deepEqual(openLocally(dataKey.CiphertextBlob!, material), Buffer.from(dataKey.Plaintext!));

    const deleted = await gw.client.send(new DeleteImportedKeyMaterialCommand({ KeyId }));
    assert.equal(deleted.KeyMaterialId, imported.KeyMaterialId);
    const afterDelete = (await gw.client.send(new DescribeKeyCommand({ KeyId }))).KeyMetadata!;
    assert.equal(afterDelete.KeyState, 'PendingImport');
    assert.equal(afterDelete.ExpirationModel, undefined);
    await assert.rejects(gw.client.send(new DecryptCommand({ CiphertextBlob: sealed.CiphertextBlob })), errorName('KMSInvalidStateException'));

    await assert.rejects(importInto(KeyId, crypto.randomBytes(32)), errorName('IncorrectKeyMaterialException'));
    const again = await importInto(KeyId, material, { algorithm: 'RSA_AES_KEY_WRAP_SHA_1', spec: 'RSA_3072' });
    assert.equal(again.KeyMaterialId, imported.KeyMaterialId);
    assert.equal(Buffer.from((await gw.client.send(new DecryptCommand({ CiphertextBlob: sealed.CiphertextBlob }))).Plaintext!).toString(), 'imported');
  });

  it('the import token: of another key InvalidImportTokenException, past 24 hours ExpiredImportTokenException; AWS_KMS keys take none', async () => {
    const [a, b] = [await externalKey(), await externalKey()];
    const params = await gw.client.send(new GetParametersForImportCommand({ KeyId: a, WrappingAlgorithm: 'RSAES_OAEP_SHA_1', WrappingKeySpec: 'RSA_2048' }));
    const EncryptedKeyMaterial = wrapKeyMaterial(params.PublicKey!, 'RSAES_OAEP_SHA_1', crypto.randomBytes(32));
    const send = (KeyId: string, ImportToken = params.ImportToken) =>
      gw.client.send(new ImportKeyMaterialCommand({ KeyId, ImportToken, EncryptedKeyMaterial, ExpirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE' }));
    await assert.rejects(send(b), errorName('InvalidImportTokenException'));
    await assert.rejects(send(a, crypto.randomBytes(52)), errorName('InvalidImportTokenException'));
    await assert.rejects(
      gw.client.send(new ImportKeyMaterialCommand({ KeyId: a, ImportToken: params.ImportToken, EncryptedKeyMaterial: crypto.randomBytes(256), ExpirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE' })),
      errorName('InvalidCiphertextException'),
    );
    gw.clock.now = new Date(gw.clock.now.getTime() + 25 * 3600_000);
    await assert.rejects(send(a), errorName('ExpiredImportTokenException'));
    const generated = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!;
    await assert.rejects(
      gw.client.send(new GetParametersForImportCommand({ KeyId: generated.KeyId, WrappingAlgorithm: 'RSAES_OAEP_SHA_1', WrappingKeySpec: 'RSA_2048' })),
      (e: Error) => e.name === 'UnsupportedOperationException' && e.message === `${generated.Arn} origin is AWS_KMS which is not valid for this operation.`,
    );
  });

  it('parameters whose wrapping key is gone from the token (expired, replaced) make their token InvalidImportTokenException, not a 500', async () => {
    const KeyId = await externalKey();
    const params = await gw.client.send(new GetParametersForImportCommand({ KeyId, WrappingAlgorithm: 'RSAES_OAEP_SHA_1', WrappingKeySpec: 'RSA_2048' }));
    const [stored] = await gw.deps.keys.listImportParameters(KeyId);
    await gw.deps.hsm.destroyKey(stored.objects.private);
    await assert.rejects(
      gw.client.send(new ImportKeyMaterialCommand({ KeyId, ImportToken: params.ImportToken, EncryptedKeyMaterial: wrapKeyMaterial(params.PublicKey!, 'RSAES_OAEP_SHA_1', crypto.randomBytes(32)), ExpirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE' })),
      errorName('InvalidImportTokenException'),
    );
    assert.equal((await gw.client.send(new DescribeKeyCommand({ KeyId }))).KeyMetadata!.KeyState, 'PendingImport');
    assert.equal((await gw.deps.keys.listIntents()).filter((i) => i.keyId === KeyId).length, 0);
  });

  it('new material for an on-demand rotation: pending until RotateKeyOnDemand makes it current; earlier ciphertexts still decrypt', async () => {
    const KeyId = await externalKey();
    await assert.rejects(gw.client.send(new RotateKeyOnDemandCommand({ KeyId })), (e: Error) => e.name === 'KMSInvalidStateException' && /is pending import\.$/.test(e.message));
    const first = await importInto(KeyId, crypto.randomBytes(32));
    await assert.rejects(gw.client.send(new RotateKeyOnDemandCommand({ KeyId })), (e: Error) => e.name === 'KMSInvalidStateException' && e.message.startsWith('No available key material pending rotation for the key: '));
    const before = await gw.client.send(new EncryptCommand({ KeyId, Plaintext: Buffer.from('old') }));
    const second = crypto.randomBytes(32);
    const pending = await importInto(KeyId, second, { extra: { ImportType: 'NEW_KEY_MATERIAL' } });
    await assert.rejects(importInto(KeyId, crypto.randomBytes(32), { extra: { ImportType: 'NEW_KEY_MATERIAL' } }), (e: Error) => e.name === 'KMSInvalidStateException' && e.message.includes(`(id: ${pending.KeyMaterialId}) is pending rotation`));
    const listed = (await gw.client.send(new ListKeyRotationsCommand({ KeyId, IncludeKeyMaterial: 'ALL_KEY_MATERIAL' }))).Rotations!;
    assert.deepEqual(listed.map((r) => [r.KeyMaterialId, r.KeyMaterialState, r.ImportState]), [[first.KeyMaterialId, 'CURRENT', 'IMPORTED'], [pending.KeyMaterialId, 'PENDING_ROTATION', 'IMPORTED']]);
    assert.equal((await gw.client.send(new DescribeKeyCommand({ KeyId }))).KeyMetadata!.CurrentKeyMaterialId, first.KeyMaterialId);
    await gw.client.send(new RotateKeyOnDemandCommand({ KeyId }));
    assert.equal((await gw.client.send(new DescribeKeyCommand({ KeyId }))).KeyMetadata!.CurrentKeyMaterialId, pending.KeyMaterialId);
    const after = await gw.client.send(new EncryptCommand({ KeyId, Plaintext: Buffer.from('new') }));
    assert.equal(openLocally(after.CiphertextBlob!, second).toString(), 'new');
    assert.equal(Buffer.from((await gw.client.send(new DecryptCommand({ CiphertextBlob: before.CiphertextBlob }))).Plaintext!).toString(), 'old');
  });

  for (const [spec, bytes, algorithm] of [['HMAC_256', 32, 'RSAES_OAEP_SHA_1'], ['HMAC_224', 28, 'RSA_AES_KEY_WRAP_SHA_1'], ['HMAC_512', 64, 'RSA_AES_KEY_WRAP_SHA_1']] as const) {
    it(`${spec}: ${bytes} bytes of material imported with ${algorithm}; GenerateMac is HMAC under exactly them`, async () => {
      const KeyId = await externalKey(spec, 'GENERATE_VERIFY_MAC');
      const material = crypto.randomBytes(bytes);
      await importInto(KeyId, material, { algorithm });
      const hash = `sha${spec.slice(5)}`;
      const { Mac } = await gw.client.send(new GenerateMacCommand({ KeyId, Message: Buffer.from('message'), MacAlgorithm: `HMAC_SHA_${spec.slice(5)}` as 'HMAC_SHA_256' }));
      assert.deepEqual(Buffer.from(Mac!), crypto.createHmac(hash, material).update('message').digest());
    });
  }

  for (const [spec, make, algorithm, signing] of [
    ['RSA_2048', () => crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }), 'RSA_AES_KEY_WRAP_SHA_1', 'RSASSA_PSS_SHA_256'],
    ['ECC_NIST_P256', () => crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }), 'RSAES_OAEP_SHA_1', 'ECDSA_SHA_256'],
    ['ECC_NIST_P384', () => crypto.generateKeyPairSync('ec', { namedCurve: 'P-384' }), 'RSA_AES_KEY_WRAP_SHA_1', 'ECDSA_SHA_384'],
    ['ECC_SECG_P256K1', () => crypto.generateKeyPairSync('ec', { namedCurve: 'secp256k1' }), 'RSAES_OAEP_SHA_1', 'ECDSA_SHA_256'],
  ] as const) {
    it(`${spec}: a private key imported with ${algorithm}; GetPublicKey is its public key and its signatures verify`, async () => {
      const KeyId = await externalKey(spec, 'SIGN_VERIFY');
      const pair = make();
      const pkcs8 = pair.privateKey.export({ type: 'pkcs8', format: 'der' });
      await importInto(KeyId, pkcs8, { algorithm, spec: 'RSA_3072' });
      const { PublicKey } = await gw.client.send(new GetPublicKeyCommand({ KeyId }));
      assert.deepEqual(Buffer.from(PublicKey!), pair.publicKey.export({ type: 'spki', format: 'der' }));
      const { Signature } = await gw.client.send(new SignCommand({ KeyId, Message: Buffer.from('signed'), SigningAlgorithm: signing }));
      const hash = `sha${signing.slice(-3)}`;
      const options = signing.startsWith('RSASSA_PSS') ? { key: pair.publicKey, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 } : pair.publicKey;
      assert.ok(crypto.verify(hash, Buffer.from('signed'), options, Buffer.from(Signature!)));
    });
  }

  it('a private key that does not fit the key spec is IncorrectKeyMaterialException, and nothing is left on the token', async () => {
    const KeyId = await externalKey('ECC_NIST_P256', 'SIGN_VERIFY');
    const wrongCurve = crypto.generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ type: 'pkcs8', format: 'der' });
    const before = (await gw.deps.hsm.listKeyObjects('qkms/')).length;
    await assert.rejects(importInto(KeyId, wrongCurve, { algorithm: 'RSA_AES_KEY_WRAP_SHA_1' }), errorName('IncorrectKeyMaterialException'));
    // The wrapping pair of that GetParametersForImport stays until its expiry; the material's objects are gone.
    assert.equal((await gw.deps.hsm.listKeyObjects('qkms/')).length, before + 2);
    assert.equal((await gw.deps.keys.listIntents()).filter((i) => i.keyId === KeyId).length, 0);
  });

  it('material that expires is deleted by the scheduler at ValidTo, and the wrapping keys go when their parameters expire', async () => {
    const KeyId = await externalKey();
    const ValidTo = new Date(gw.clock.now.getTime() + 3600_000);
    await importInto(KeyId, crypto.randomBytes(32), { extra: { ExpirationModel: 'KEY_MATERIAL_EXPIRES', ValidTo } });
    const described = (await gw.client.send(new DescribeKeyCommand({ KeyId }))).KeyMetadata!;
    assert.equal(described.ExpirationModel, 'KEY_MATERIAL_EXPIRES');
    assert.equal(described.ValidTo!.getTime(), ValidTo.getTime());
    gw.clock.now = new Date(gw.clock.now.getTime() + 2 * 3600_000);
    // Past ValidTo the material is expired at once, before the scheduler's next run deletes it.
    await assert.rejects(gw.client.send(new EncryptCommand({ KeyId, Plaintext: Buffer.from('late') })), (e: Error) => e.name === 'KMSInvalidStateException' && /is pending import\.$/.test(e.message));
    await gw.tick();
    assert.equal((await gw.client.send(new DescribeKeyCommand({ KeyId }))).KeyMetadata!.KeyState, 'PendingImport');
    gw.clock.now = new Date(gw.clock.now.getTime() + 48 * 3600_000);
    await gw.tick();
    assert.deepEqual(await gw.deps.keys.listImportParameters(KeyId), []);
    assert.ok(!(await gw.deps.hsm.listKeyObjects(`qkms/${KeyId}/`)).length);
  });
});

describe('Import key material (BYOK) through boto3', function () {
  this.timeout(120000);
  let gw: Harness;
  before(async () => {
    gw = await startGateway(integration().hsm);
  });
  after(() => gw.close());

  it('create_key(Origin=EXTERNAL), get_parameters_for_import, import_key_material wrapped with the cryptography package, encrypt, decrypt, delete_imported_key_material', async function () {
    const python = ['python3', '/usr/bin/python3'].find((py) => spawnSync(py, ['-c', 'import boto3, cryptography']).status === 0);
    if (!python) {
      console.log('      (skipped: no python3 here has boto3 and cryptography)');
      this.skip();
    }
    const script = `
import json, os, sys, boto3
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding
kms = boto3.client('kms', endpoint_url=sys.argv[1], region_name='us-east-1')
out = {}
key_id = kms.create_key(Origin='EXTERNAL')['KeyMetadata']['KeyId']
out['created'] = kms.describe_key(KeyId=key_id)['KeyMetadata']['KeyState']
material = os.urandom(32)
for algorithm, spec in (('RSAES_OAEP_SHA_1', 'RSA_2048'), ('RSA_AES_KEY_WRAP_SHA_1', 'RSA_4096')):
    params = kms.get_parameters_for_import(KeyId=key_id, WrappingAlgorithm=algorithm, WrappingKeySpec=spec)
    public_key = serialization.load_der_public_key(params['PublicKey'])
    oaep = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    if algorithm.startswith('RSAES'):
        wrapped = public_key.encrypt(material, oaep)
    else:
        aes_key = os.urandom(32)
        wrapped = public_key.encrypt(aes_key, oaep) + aes_key_wrap_with_padding(aes_key, material)
    imported = kms.import_key_material(KeyId=key_id, ImportToken=params['ImportToken'], EncryptedKeyMaterial=wrapped, ExpirationModel='KEY_MATERIAL_DOES_NOT_EXPIRE')
    out.setdefault('material_ids', []).append(imported['KeyMaterialId'])
    if algorithm.startswith('RSAES'):
        blob = kms.encrypt(KeyId=key_id, Plaintext=b'by boto3')['CiphertextBlob']
        out['deleted'] = kms.delete_imported_key_material(KeyId=key_id)['KeyMaterialId'] == imported['KeyMaterialId']
        out['after_delete'] = kms.describe_key(KeyId=key_id)['KeyMetadata']['KeyState']
out['decrypted'] = kms.decrypt(CiphertextBlob=blob)['Plaintext'].decode()
try:
    kms.import_key_material(KeyId=key_id, ImportToken=b'not a token', EncryptedKeyMaterial=b'x' * 256, ExpirationModel='KEY_MATERIAL_DOES_NOT_EXPIRE')
except kms.exceptions.InvalidImportTokenException:
    out['bad_token'] = 'InvalidImportTokenException'
print(json.dumps(out))
`;
    const env = { ...process.env, AWS_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey, AWS_EC2_METADATA_DISABLED: 'true' };
    const out = JSON.parse((await run(python!, ['-c', script, gw.url], { env })).stdout);
    assert.equal(out.created, 'PendingImport');
    assert.equal(out.material_ids.length, 2);
    assert.equal(out.material_ids[0], out.material_ids[1]);
    assert.deepEqual([out.deleted, out.after_delete, out.decrypted, out.bad_token], [true, 'PendingImport', 'by boto3', 'InvalidImportTokenException']);
  });
});

describe('Import key material (BYOK) with the AWS CLI and openssl: docs/examples/import-key-material.sh as written', function () {
  this.timeout(120000);
  let gw: Harness;
  before(async () => {
    gw = await startGateway(integration().hsm);
  });
  after(() => gw.close());

  it('the key ceremony example runs: created, imported (RSAES_OAEP_SHA_256, RSA_4096), used, deleted, imported again, decrypted', async function () {
    if (spawnSync('aws', ['--version']).status !== 0 || spawnSync('openssl', ['version']).status !== 0) {
      console.log('      (skipped: the aws CLI or openssl is not installed)');
      this.skip();
    }
    const env = {
      ...process.env, ENDPOINT: gw.url, AWS_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey,
      AWS_DEFAULT_REGION: 'us-east-1', AWS_EC2_METADATA_DISABLED: 'true', AWS_PAGER: '',
    };
    const { stdout } = await run('bash', ['docs/examples/import-key-material.sh'], { env });
    const lines = stdout.trim().split('\n');
    assert.ok(lines.includes('Enabled\tEXTERNAL\tKEY_MATERIAL_DOES_NOT_EXPIRE'), stdout);
    assert.equal(lines.at(-1), 'ceremony', stdout);
  });
});
