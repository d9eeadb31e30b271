import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  DecryptCommand, DescribeKeyCommand, DisableKeyCommand, DisableKeyRotationCommand, EnableKeyCommand, EncryptCommand, GetKeyRotationStatusCommand,
  ListAliasesCommand, ListResourceTagsCommand, SignCommand, TagResourceCommand, UntagResourceCommand, UpdateKeyDescriptionCommand,
} from '@aws-sdk/client-kms';
import { applySeedFile, SeedFileError } from '../../src/seed';
import { spawnGateway, startChildGateway } from '../support/child-gateway';
import { startGateway, type Harness } from '../support/harness';
import { integration } from '../support/integration-hooks';

const SYM = 'aaaa1111-12ab-34cd-56ef-1234567890ab';
const RSA = 'bbbb2222-12ab-34cd-56ef-1234567890ab';
const MAC = 'cccc3333-12ab-34cd-56ef-1234567890ab';

/** The gateway's JSON log lines with this message. */
const logged = (text: string, message: string) =>
  text.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.message === message);
const DIFFERS = 'seed file: an existing key differs from the file and is left as it is; QKMS_SEED_APPLY_CHANGES=true applies the file';
const CHANGED = 'seed file: an existing key was changed to match the file';
const REFUSED = 'seed file: a change to an existing key was refused; the key keeps its value';

const SEED_YAML = `
keys:
  - keyId: ${SYM}
    description: CI data keys
    aliases: [alias/ci-data, alias/ci-data-2]
    tags:
      team: payments
      version: 1.10
    rotationPeriodInDays: 180
  - keyId: ${RSA}
    keySpec: RSA_2048
    keyUsage: SIGN_VERIFY
    aliases: [alias/ci-signing]
  - keyId: ${MAC}
    keySpec: HMAC_256
    keyUsage: GENERATE_VERIFY_MAC
`;

describe('Seeding (QKMS_SEED_FILE, YAML or JSON)', function () {
  this.timeout(60000);
  let dir: string;
  let dataDir: string;
  let seedFile: string;
  let gw: Harness | undefined;

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-seeding-'));
    dataDir = path.join(dir, 'data');
    seedFile = path.join(dir, 'seed.yaml');
    fs.writeFileSync(seedFile, SEED_YAML);
  });
  afterEach(async () => {
    await gw?.close();
    gw = undefined;
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('creates every key with its fixed id, spec, usage, description, aliases, tags and rotation', async () => {
    gw = await startGateway(integration().hsm, { QKMS_SEED_FILE: seedFile, QKMS_DATA_DIR: dataDir });
    const sym = (await gw.client.send(new DescribeKeyCommand({ KeyId: 'alias/ci-data' }))).KeyMetadata!;
    assert.equal(sym.KeyId, SYM);
    assert.equal(sym.KeySpec, 'SYMMETRIC_DEFAULT');
    assert.equal(sym.Description, 'CI data keys');
    const rotation = await gw.client.send(new GetKeyRotationStatusCommand({ KeyId: SYM }));
    assert.equal(rotation.KeyRotationEnabled, true);
    assert.equal(rotation.RotationPeriodInDays, 180);
    const tags = (await gw.client.send(new ListResourceTagsCommand({ KeyId: SYM }))).Tags!;
    assert.deepEqual(tags.map((t) => [t.TagKey, t.TagValue]).sort(), [['team', 'payments'], ['version', '1.10']]);
    const aliases = (await gw.client.send(new ListAliasesCommand({}))).Aliases!.map((a) => [a.AliasName, a.TargetKeyId]).sort();
    assert.deepEqual(aliases, [['alias/ci-data', SYM], ['alias/ci-data-2', SYM], ['alias/ci-signing', RSA]]);
    const rsa = (await gw.client.send(new DescribeKeyCommand({ KeyId: RSA }))).KeyMetadata!;
    assert.deepEqual([rsa.KeySpec, rsa.KeyUsage], ['RSA_2048', 'SIGN_VERIFY']);
    const signature = await gw.client.send(new SignCommand({ KeyId: 'alias/ci-signing', Message: Buffer.from('m'), SigningAlgorithm: 'RSASSA_PSS_SHA_256' }));
    assert.ok(signature.Signature!.length === 256);
    const mac = (await gw.client.send(new DescribeKeyCommand({ KeyId: MAC }))).KeyMetadata!;
    assert.deepEqual([mac.KeySpec, mac.KeyUsage], ['HMAC_256', 'GENERATE_VERIFY_MAC']);
    const audited = (await gw.auditRecords()).filter((r) => r.sourceIp === 'seed-file').map((r) => [r.operation, r.keyArn!.split('/')[1]]);
    assert.deepEqual(audited, [['CreateKey', SYM], ['CreateAlias', SYM], ['CreateAlias', SYM], ['CreateKey', RSA], ['CreateAlias', RSA], ['CreateKey', MAC]]);
  });

  it('never overwrites: a restart keeps changed keys as they are, the same material, and re-adds only missing aliases', async () => {
    gw = await startGateway(integration().hsm, { QKMS_SEED_FILE: seedFile, QKMS_DATA_DIR: dataDir });
    const sealed = await gw.client.send(new EncryptCommand({ KeyId: SYM, Plaintext: Buffer.from('kept') }));
    await gw.client.send(new UpdateKeyDescriptionCommand({ KeyId: SYM, Description: 'changed by an operator' }));
    await gw.client.send(new DisableKeyRotationCommand({ KeyId: SYM }));
    await gw.deps.keys.deleteAlias('alias/ci-data-2');
    await gw.close();
    gw = await startGateway(integration().hsm, { QKMS_SEED_FILE: seedFile, QKMS_DATA_DIR: dataDir });
    const sym = (await gw.client.send(new DescribeKeyCommand({ KeyId: SYM }))).KeyMetadata!;
    assert.equal(sym.Description, 'changed by an operator');
    assert.equal((await gw.client.send(new GetKeyRotationStatusCommand({ KeyId: SYM }))).KeyRotationEnabled, false);
    assert.equal(Buffer.from((await gw.client.send(new DecryptCommand({ CiphertextBlob: sealed.CiphertextBlob }))).Plaintext!).toString(), 'kept');
    assert.equal((await gw.client.send(new DescribeKeyCommand({ KeyId: 'alias/ci-data-2' }))).KeyMetadata!.KeyId, SYM);
    assert.match(gw.logText(), /"created":\[\]/);
    // Said in the log: one warning for the one key that differs, naming the fields, never the values.
    const warnings = logged(gw.logText(), DIFFERS);
    assert.deepEqual(warnings.map((w) => [w.level, w.keyId, w.fields]), [['warn', SYM, ['description', 'rotation']]]);
    assert.doesNotMatch(JSON.stringify(warnings), /changed by an operator|CI data keys/);
    assert.match(gw.logText(), new RegExp(`"differing":\\["${SYM}"\\]`));
  });

  it('QKMS_SEED_APPLY_CHANGES=true changes an existing key to match the file, through the operations, audited as seed-file', async () => {
    gw = await startGateway(integration().hsm, { QKMS_SEED_FILE: seedFile, QKMS_DATA_DIR: dataDir });
    await gw.client.send(new UpdateKeyDescriptionCommand({ KeyId: SYM, Description: 'changed again' }));
    await gw.client.send(new TagResourceCommand({ KeyId: SYM, Tags: [{ TagKey: 'team', TagValue: 'other' }, { TagKey: 'extra', TagValue: 'x' }] }));
    await gw.client.send(new UntagResourceCommand({ KeyId: SYM, TagKeys: ['version'] }));
    await gw.client.send(new UpdateKeyDescriptionCommand({ KeyId: RSA, Description: 'not in the file' }));
    // Records are told apart by request id: among replicas the trail is read chain by chain, so a
    // later record is not always further down the list.
    const auditedBefore = new Set((await gw.auditRecords()).map((r) => r.requestId));
    await gw.close();
    gw = await startGateway(integration().hsm, { QKMS_SEED_FILE: seedFile, QKMS_DATA_DIR: dataDir, QKMS_SEED_APPLY_CHANGES: 'true' });
    assert.equal((await gw.client.send(new DescribeKeyCommand({ KeyId: SYM }))).KeyMetadata!.Description, 'CI data keys');
    const tags = (await gw.client.send(new ListResourceTagsCommand({ KeyId: SYM }))).Tags!;
    assert.deepEqual(tags.map((t) => [t.TagKey, t.TagValue]).sort(), [['team', 'payments'], ['version', '1.10']]);
    const rotation = await gw.client.send(new GetKeyRotationStatusCommand({ KeyId: SYM }));
    assert.deepEqual([rotation.KeyRotationEnabled, rotation.RotationPeriodInDays], [true, 180]);
    // The RSA entry gives no description: an operator's stays.
    assert.equal((await gw.client.send(new DescribeKeyCommand({ KeyId: RSA }))).KeyMetadata!.Description, 'not in the file');
    const audited = (await gw.auditRecords()).filter((r) => !auditedBefore.has(r.requestId) && r.sourceIp === 'seed-file').map((r) => [r.operation, r.keyArn!.split('/')[1]]);
    assert.deepEqual(audited, [['UpdateKeyDescription', SYM], ['UntagResource', SYM], ['TagResource', SYM], ['EnableKeyRotation', SYM]]);
    assert.deepEqual(logged(gw.logText(), CHANGED).map((l) => [l.keyId, l.fields]), [[SYM, ['description', 'tags', 'rotation']]]);
    assert.deepEqual(logged(gw.logText(), DIFFERS), []);
    // Applied once: the next start finds nothing to change.
    const auditedAfter = new Set((await gw.auditRecords()).map((r) => r.requestId));
    await gw.close();
    gw = await startGateway(integration().hsm, { QKMS_SEED_FILE: seedFile, QKMS_DATA_DIR: dataDir, QKMS_SEED_APPLY_CHANGES: 'true' });
    assert.deepEqual((await gw.auditRecords()).filter((r) => !auditedAfter.has(r.requestId) && r.sourceIp === 'seed-file'), []);
    assert.deepEqual(logged(gw.logText(), CHANGED), []);
  });

  it('a change the key refuses (rotation of a disabled key) is audited with its error and logged; the rest is applied and the gateway starts', async () => {
    gw = await startGateway(integration().hsm, { QKMS_SEED_FILE: seedFile, QKMS_DATA_DIR: dataDir });
    await gw.client.send(new UpdateKeyDescriptionCommand({ KeyId: SYM, Description: 'changed while disabled' }));
    await gw.client.send(new DisableKeyRotationCommand({ KeyId: SYM }));
    await gw.client.send(new DisableKeyCommand({ KeyId: SYM }));
    const auditedBefore = new Set((await gw.auditRecords()).map((r) => r.requestId));
    await gw.close();
    gw = await startGateway(integration().hsm, { QKMS_SEED_FILE: seedFile, QKMS_DATA_DIR: dataDir, QKMS_SEED_APPLY_CHANGES: 'true' });
    const sym = (await gw.client.send(new DescribeKeyCommand({ KeyId: SYM }))).KeyMetadata!;
    assert.deepEqual([sym.Description, sym.KeyState], ['CI data keys', 'Disabled']);
    const refused = logged(gw.logText(), REFUSED);
    assert.deepEqual(refused.map((l) => [l.level, l.keyId, l.field, l.error]), [['warn', SYM, 'rotation', 'DisabledException']]);
    assert.deepEqual(logged(gw.logText(), CHANGED).map((l) => [l.keyId, l.fields]), [[SYM, ['description']]]);
    // The description is changed once; the refused rotation is tried (and audited) by every process
    // that starts with the file while the key still differs: one alone, each replica among several.
    const seeded = (await gw.auditRecords()).filter((r) => !auditedBefore.has(r.requestId) && r.sourceIp === 'seed-file').map((r) => [r.operation, r.status, r.errorCode ?? null]);
    assert.deepEqual(seeded.filter(([op]) => op === 'UpdateKeyDescription'), [['UpdateKeyDescription', 200, null]]);
    const rotations = seeded.filter(([op]) => op === 'EnableKeyRotation');
    assert.ok(rotations.length >= 1 && rotations.every((r) => r[1] === 400 && r[2] === 'DisabledException'), JSON.stringify(seeded));
    assert.equal(seeded.length, 1 + rotations.length, JSON.stringify(seeded));
    await gw.client.send(new EnableKeyCommand({ KeyId: SYM }));
  });

  it('refuses a file that contradicts the store, before creating anything', async () => {
    gw = await startGateway(integration().hsm, { QKMS_DATA_DIR: dataDir });
    const other = path.join(dir, 'conflict.json');
    const NEW = 'dddd4444-12ab-34cd-56ef-1234567890ab';
    fs.writeFileSync(other, JSON.stringify({ keys: [{ keyId: NEW, aliases: ['alias/new'] }, { keyId: RSA, keySpec: 'RSA_3072', keyUsage: 'SIGN_VERIFY' }] }));
    await assert.rejects(applySeedFile(other, gw.deps), (err: Error) => err instanceof SeedFileError && /exists as RSA_2048\/SIGN_VERIFY, the file says RSA_3072\/SIGN_VERIFY/.test(err.message));
    fs.writeFileSync(other, JSON.stringify({ keys: [{ keyId: NEW }, { keyId: MAC, keySpec: 'HMAC_256', keyUsage: 'GENERATE_VERIFY_MAC', aliases: ['alias/ci-data'] }] }));
    await assert.rejects(applySeedFile(other, gw.deps), (err: Error) => err instanceof SeedFileError && new RegExp(`alias alias/ci-data already names key ${SYM}`).test(err.message));
    // An existing key already at the alias quota gets no more from the file.
    for (let i = 0; i < 50; i++) await gw.deps.keys.insertAlias({ aliasName: `alias/quota-${i}`, targetKeyId: MAC, createdAt: new Date(), lastUpdatedAt: new Date() }, 50);
    fs.writeFileSync(other, JSON.stringify({ keys: [{ keyId: NEW }, { keyId: MAC, keySpec: 'HMAC_256', keyUsage: 'GENERATE_VERIFY_MAC', aliases: ['alias/one-too-many'] }] }));
    await assert.rejects(applySeedFile(other, gw.deps), (err: Error) => err instanceof SeedFileError && /more than the maximum of 50 aliases/.test(err.message));
    assert.equal(await gw.deps.keys.getKey(NEW), undefined);
    assert.equal(await gw.deps.keys.aliasTarget('alias/new'), undefined);
  });

  it('a start that fails on the seed file leaves nothing of the data dir open (store, audit trail, lock)', async () => {
    const bad = path.join(dir, 'conflict-start.json');
    fs.writeFileSync(bad, JSON.stringify({ keys: [{ keyId: RSA, keySpec: 'RSA_3072', keyUsage: 'SIGN_VERIFY' }] }));
    const openInDataDir = () => fs.readdirSync('/proc/self/fd').filter((fd) => {
      try {
        return fs.readlinkSync(`/proc/self/fd/${fd}`).startsWith(dataDir);
      } catch {
        return false;
      }
    });
    assert.deepEqual(openInDataDir(), []);
    await assert.rejects(startGateway(integration().hsm, { QKMS_SEED_FILE: bad, QKMS_DATA_DIR: dataDir }), SeedFileError);
    assert.deepEqual(openInDataDir(), [], 'files of the data dir still open after the failed start');
  });

  it('gives a fresh embedded token the same key ids (gateway process), and a bad file stops start-up with exit code 2', async () => {
    const fresh = path.join(dir, 'fresh');
    const child = await startChildGateway({ QKMS_DATA_DIR: fresh, QKMS_SEED_FILE: seedFile });
    try {
      const rsa = (await child.client.send(new DescribeKeyCommand({ KeyId: 'alias/ci-signing' }))).KeyMetadata!;
      assert.equal(rsa.KeyId, RSA);
      assert.equal((await child.client.send(new GetKeyRotationStatusCommand({ KeyId: SYM }))).RotationPeriodInDays, 180);
    } finally {
      assert.equal(await child.stop(), 0);
    }
    const apply = spawnGateway({ QKMS_DATA_DIR: path.join(dir, 'fresh-apply'), QKMS_SEED_APPLY_CHANGES: 'true' });
    assert.equal(await apply.exited, 2);
    assert.match(apply.output(), /QKMS_SEED_APPLY_CHANGES missing required peer "QKMS_SEED_FILE"/);
    const bad = path.join(dir, 'bad.yaml');
    fs.writeFileSync(bad, `keys:\n  - keyId: ${RSA}\n    keySpec: RSA_2048\n    keyUsage: SIGN_VERIFY\n    rotationPeriodInDays: 90\n`);
    const run = spawnGateway({ QKMS_DATA_DIR: path.join(dir, 'fresh-bad'), QKMS_SEED_FILE: bad });
    assert.equal(await run.exited, 2);
    assert.match(run.output(), /key spec RSA_2048 is not valid for key rotation/);
  });
});
