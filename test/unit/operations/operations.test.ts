import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BlobMechanism } from '../../../src/domain/ciphertext-blob';
import { Envelope, envelopeModes } from '../../../src/domain/envelope';
import { formatGrantToken, parseGrantToken } from '../../../src/domain/grant-token';
import * as E from '../../../src/errors/kms-errors';
import { FaultInjectingHsm } from '../../../src/hsm/fault-injecting-hsm';
import { createKey } from '../../../src/operations/create-key';
import { registry } from '../../../src/operations/registry';
import { validateInput } from '../../../src/operations/validate-input';
import { applySeedFile } from '../../../src/seed';
import { operationContext, unitDeps } from '../../support/unit-deps';

type Deps = Awaited<ReturnType<typeof unitDeps>>;

async function newKey(deps: Deps): Promise<string> {
  const out = (await createKey.handle({}, operationContext(deps))) as { KeyMetadata: { KeyId: string } };
  return out.KeyMetadata.KeyId;
}

const call = (name: string, body: unknown, deps: Deps) => {
  const op = registry.get(name)!;
  return op.handle(validateInput(op.schema, body), operationContext(deps)) as Promise<Record<string, any>>;
};

describe('Operations over FakeHsm', () => {
  it('Decrypt maps HsmError by kind only: integrity is InvalidCiphertextException, a CKR_GENERAL_ERROR of kind internal a 500', async () => {
    const deps = await unitDeps();
    const faults = new FaultInjectingHsm(deps.fake);
    deps.envelope = new Envelope(faults.hsm, envelopeModes(deps.fake.capabilities(), deps.config.dataKeyWrap));
    const keyId = await newKey(deps);
    const { CiphertextBlob } = await call('Encrypt', { KeyId: keyId, Plaintext: Buffer.from('x').toString('base64') }, deps);
    // What the PKCS#11 layer makes of a CKR_GENERAL_ERROR from C_Decrypt on a profile without the SoftHSM2 quirk.
    faults.add({ method: 'decryptAesGcm', times: 1, fail: { kind: 'internal', ckr: 'CKR_GENERAL_ERROR' } });
    await assert.rejects(call('Decrypt', { CiphertextBlob }, deps), (e: unknown) => !(e instanceof E.InvalidCiphertextException) && !(e instanceof E.KmsError && e.status < 500));
    faults.add({ method: 'decryptAesGcm', times: 1, fail: { kind: 'integrity', ckr: 'CKR_GENERAL_ERROR' } });
    await assert.rejects(call('Decrypt', { CiphertextBlob }, deps), E.InvalidCiphertextException);
    assert.equal((await call('Decrypt', { CiphertextBlob }, deps)).Plaintext, Buffer.from('x').toString('base64'));
    deps.hsm = faults.hsm;
    const rsa = ((await createKey.handle({ KeySpec: 'RSA_2048', KeyUsage: 'ENCRYPT_DECRYPT' }, operationContext(deps))) as { KeyMetadata: { KeyId: string } }).KeyMetadata.KeyId;
    const sealed = await call('Encrypt', { KeyId: rsa, Plaintext: Buffer.from('x').toString('base64'), EncryptionAlgorithm: 'RSAES_OAEP_SHA_1' }, deps);
    const rsaDecrypt = { KeyId: rsa, CiphertextBlob: sealed.CiphertextBlob, EncryptionAlgorithm: 'RSAES_OAEP_SHA_1' };
    faults.add({ method: 'rsaDecrypt', times: 1, fail: { kind: 'internal', ckr: 'CKR_GENERAL_ERROR' } });
    await assert.rejects(call('Decrypt', rsaDecrypt, deps), (e: unknown) => !(e instanceof E.InvalidCiphertextException) && !(e instanceof E.KmsError && e.status < 500));
    faults.add({ method: 'rsaDecrypt', times: 1, fail: { kind: 'integrity', ckr: 'CKR_GENERAL_ERROR' } });
    await assert.rejects(call('Decrypt', rsaDecrypt, deps), E.InvalidCiphertextException);
  });

  it('Decrypt with a KeyId looks the key up once, and IncorrectKeyException for another key', async () => {
    const deps = await unitDeps();
    const keyId = await newKey(deps);
    const other = await newKey(deps);
    const { CiphertextBlob } = await call('Encrypt', { KeyId: keyId, Plaintext: Buffer.from('x').toString('base64') }, deps);
    const getKey = deps.keys.getKey.bind(deps.keys);
    let lookups = 0;
    deps.keys.getKey = (id: string) => (lookups++, getKey(id));
    assert.equal((await call('Decrypt', { CiphertextBlob, KeyId: keyId }, deps)).Plaintext, Buffer.from('x').toString('base64'));
    assert.equal(lookups, 1);
    await assert.rejects(call('Decrypt', { CiphertextBlob, KeyId: other }, deps), E.IncorrectKeyException);
  });

  it('InvalidKeyUsageException for a key that is not a symmetric ENCRYPT_DECRYPT key, in AWS wording', async () => {
    const deps = await unitDeps();
    const keyId = await newKey(deps);
    const good = await call('GenerateDataKey', { KeyId: keyId, KeySpec: 'AES_256' }, deps);
    // Signing keys arrive with the asymmetric issue; until then the record is written directly.
    const db = (deps.keys as unknown as { db: { prepare(s: string): { run(...a: unknown[]): void } } }).db;
    db.prepare("UPDATE keys SET key_usage = 'SIGN_VERIFY' WHERE key_id = ?").run(keyId);
    const arn = `arn:verenc:111122223333:key/${keyId}`;
    await assert.rejects(call('GenerateDataKey', { KeyId: keyId, KeySpec: 'AES_256' }, deps), (e: Error) =>
      e instanceof E.InvalidKeyUsageException && e.message === `${arn} key usage is SIGN_VERIFY which is not valid for GenerateDataKey.`);
    await assert.rejects(call('Decrypt', { CiphertextBlob: good.CiphertextBlob }, deps), (e: Error) =>
      e instanceof E.InvalidKeyUsageException && e.message === `${arn} key usage is SIGN_VERIFY which is not valid for Decrypt.`);
  });

  it('with QKMS_DATA_KEY_WRAP=AES_GCM, wraps data keys with GCM (mechanism 2) and binds the context', async () => {
    const deps = await unitDeps({ QKMS_HSM_PROFILE: 'generic', QKMS_DATA_KEY_WRAP: 'AES_GCM' });
    const keyId = await newKey(deps);
    const out = await call('GenerateDataKey', { KeyId: keyId, NumberOfBytes: 48, EncryptionContext: { a: 'b' } }, deps);
    const blob = Buffer.from(out.CiphertextBlob, 'base64');
    assert.equal(blob[1], BlobMechanism.AesGcm);
    assert.equal(blob.length, 22 + 12 + 48 + 16);
    const back = await call('Decrypt', { CiphertextBlob: out.CiphertextBlob, EncryptionContext: { a: 'b' } }, deps);
    assert.equal(back.Plaintext, out.Plaintext);
    await assert.rejects(call('Decrypt', { CiphertextBlob: out.CiphertextBlob, EncryptionContext: { a: 'c' } }, deps), E.InvalidCiphertextException);
    for (const at of [1 + 2, 20, 30, blob.length - 1]) {
      const bad = Buffer.from(blob);
      bad[at] ^= 1;
      await assert.rejects(call('Decrypt', { CiphertextBlob: bad.toString('base64'), EncryptionContext: { a: 'b' } }, deps), (e: Error) => e instanceof E.InvalidCiphertextException || e instanceof E.NotFoundException, `byte ${at}`);
    }
  });

  it('a gateway set to GCM still decrypts KWP blobs made before the switch (mechanism is per blob)', async () => {
    const deps = await unitDeps();
    const keyId = await newKey(deps);
    const out = await call('GenerateDataKey', { KeyId: keyId, KeySpec: 'AES_128' }, deps);
    const gcm: Deps = { ...deps, envelope: new Envelope(deps.hsm, envelopeModes(deps.fake.capabilities(), 'AES_GCM')) };
    assert.equal((await call('Decrypt', { CiphertextBlob: out.CiphertextBlob }, gcm)).Plaintext, out.Plaintext);
  });

  it('Decrypt without KeyId of a blob naming an unknown key is InvalidCiphertextException', async () => {
    const deps = await unitDeps();
    const keyId = await newKey(deps);
    const out = await call('GenerateDataKey', { KeyId: keyId, KeySpec: 'AES_256' }, deps);
    const other = await unitDeps();
    await assert.rejects(call('Decrypt', { CiphertextBlob: out.CiphertextBlob }, other), E.InvalidCiphertextException);
    await assert.rejects(call('Decrypt', { CiphertextBlob: out.CiphertextBlob, KeyId: keyId }, other), E.NotFoundException);
  });

  it('DryRun answers DryRunOperationException only after every other check passed', async () => {
    const deps = await unitDeps();
    await assert.rejects(call('GenerateDataKey', { KeyId: 'fake', KeySpec: 'AES_256', DryRun: true }, deps), E.NotFoundException);
    await assert.rejects(call('GenerateDataKey', { KeyId: await newKey(deps), KeySpec: 'AES_256', DryRun: true }, deps), E.DryRunOperationException);
  });

  it('rejects Recipient (Nitro attestation) with UnsupportedOperationException', async () => {
    const deps = await unitDeps();
    await assert.rejects(call('GenerateDataKey', { KeyId: await newKey(deps), KeySpec: 'AES_256', Recipient: { KeyEncryptionAlgorithm: 'RSAES_OAEP_SHA_256' } }, deps), E.UnsupportedOperationException);
  });

  it("prints AWS-form ARNs with QKMS_ARN_FORMAT=aws and accepts the seed's form as input", async () => {
    const deps = await unitDeps({ QKMS_ARN_FORMAT: 'aws', QKMS_REGION: 'eu-central-1' });
    const keyId = await newKey(deps);
    const out = await call('GenerateDataKey', { KeyId: `arn:verenc:111122223333:key/${keyId}`, KeySpec: 'AES_256' }, deps);
    assert.equal(out.KeyId, `arn:aws:kms:eu-central-1:111122223333:key/${keyId}`);
  });
});

describe('Authorization across accounts', () => {
  it("another account's root is not our administrator: keyless operations and default-policy keys are denied", async () => {
    const deps = await unitDeps();
    const keyId = await newKey(deps);
    const foreign = { ...operationContext(deps), principal: { accessKeyId: 'AKIAFOREIGN00000001', principalArn: 'arn:aws:iam::999999999999:root' } };
    await assert.rejects(createKey.handle({}, foreign), (e: Error) => e instanceof E.AccessDeniedException);
    const gdk = registry.get('GenerateDataKey')!;
    await assert.rejects(gdk.handle(validateInput(gdk.schema, { KeyId: keyId, KeySpec: 'AES_256' }), foreign), (e: Error) => e instanceof E.AccessDeniedException);
  });
});

describe('Grant tokens', () => {
  it('round-trips the token format and rejects malformed ones', () => {
    const grantId = '00112233445566778899aabbccddeeff'.repeat(2);
    const token = formatGrantToken(grantId, Buffer.alloc(32, 1));
    assert.deepEqual(parseGrantToken(token), { grantId, secret: Buffer.alloc(32, 1) });
    for (const bad of ['', 'qgt1.', 'qgt2.' + token.slice(5), token + 'A', token.slice(0, -1) + '*']) {
      assert.throws(() => parseGrantToken(bad), E.InvalidGrantTokenException, bad);
    }
  });
});

describe('Seed file', () => {
  it('creates the listed keys with their fixed ids once and never overwrites them', async () => {
    const deps = await unitDeps();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-seed-unit-'));
    const file = path.join(dir, 'seed.json');
    fs.writeFileSync(file, JSON.stringify({ keys: [{ keyId: '1234abcd-12ab-34cd-56ef-1234567890ab', description: 'seed', tags: { env: 'ci' } }] }));
    assert.deepEqual(await applySeedFile(file, deps), { created: ['1234abcd-12ab-34cd-56ef-1234567890ab'], existing: [], aliasesCreated: [], changed: [], differing: [] });
    const material = await deps.keys.getMaterial('1234abcd-12ab-34cd-56ef-1234567890ab', 1);
    assert.deepEqual(await applySeedFile(file, deps), { created: [], existing: ['1234abcd-12ab-34cd-56ef-1234567890ab'], aliasesCreated: [], changed: [], differing: [] });
    assert.deepEqual(await deps.keys.getMaterial('1234abcd-12ab-34cd-56ef-1234567890ab', 1), material);
    assert.deepEqual(await deps.keys.listTags('1234abcd-12ab-34cd-56ef-1234567890ab'), [{ key: 'env', value: 'ci' }]);
    fs.writeFileSync(file, JSON.stringify({ keys: [{ keyId: 'not-a-uuid' }] }));
    await assert.rejects(applySeedFile(file, deps), /seed file/);
    await deps.audit.close();
    fs.rmSync(dir, { recursive: true });
  });
});

describe('The operation registry', () => {
  it('finds every operation in a file named after it (ListRetirableGrants in list-retirable-grants.ts), exporting the very handler the registry serves', () => {
    for (const [name, op] of registry) {
      const file = name.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();
      const exported = `${name[0].toLowerCase()}${name.slice(1)}`;
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const module = require(`../../../src/operations/${file}`) as Record<string, unknown>;
      assert.equal(module[exported], op, `${name}: src/operations/${file}.ts should export ${exported}`);
    }
  });

  it("the README's operation table names every operation served, and says which are not", () => {
    const readme = fs.readFileSync(path.join(__dirname, '../../../README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## Operations and errors'), readme.indexOf('## Configuration'));
    const rows = section.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| Operation'));
    const named = (row: string) => row.split('|')[1].match(/[A-Z][A-Za-z]+/g) ?? [];
    const served = new Set(rows.filter((r) => !r.includes('**not served yet**')).flatMap(named));
    const notServed = rows.filter((r) => r.includes('**not served yet**')).flatMap(named);
    assert.deepEqual([...registry.keys()].filter((name) => !served.has(name)), [], 'served but missing from the table');
    assert.deepEqual([...served].filter((name) => !registry.has(name)), [], 'in the table as served but not in the registry');
    assert.deepEqual(notServed.filter((name) => registry.has(name)), [], 'in the table as not served but served');
    assert.equal(registry.size + notServed.length, 54, "current botocore's KMS has 54 operations");
  });
});
