import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  CancelKeyDeletionCommand,
  ConflictException,
  CreateAliasCommand,
  CreateKeyCommand,
  DecryptCommand,
  DescribeKeyCommand,
  DisableKeyCommand,
  DisabledException,
  DisableKeyRotationCommand,
  EnableKeyCommand,
  EnableKeyRotationCommand,
  EncryptCommand,
  GenerateDataKeyCommand,
  GetKeyRotationStatusCommand,
  InvalidCiphertextException,
  KMSInvalidStateException,
  LimitExceededException,
  ListAliasesCommand,
  ListKeyRotationsCommand,
  NotFoundException,
  RotateKeyOnDemandCommand,
  ScheduleKeyDeletionCommand,
} from '@aws-sdk/client-kms';
import { startChildGateway } from '../support/child-gateway';
import { integration } from '../support/integration-hooks';
import { startGateway, type Harness } from '../support/harness';

const DAY = 86_400_000;
const versionOf = (blob: Uint8Array) => Buffer.from(blob).readUInt32BE(18);

describe('Key deletion at the end of the waiting period', () => {
  let gw: Harness;
  before(async () => {
    gw = await startGateway(integration().hsm);
  });
  after(() => gw.close());

  it('deletes nothing early; CancelKeyDeletion leaves the key Disabled', async () => {
    const start = new Date('2027-01-01T00:00:00Z');
    gw.clock.now = start;
    const id = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    await gw.client.send(new ScheduleKeyDeletionCommand({ KeyId: id, PendingWindowInDays: 7 }));
    gw.clock.now = new Date(start.getTime() + 6 * DAY);
    assert.deepEqual((await gw.tick()).deleted, []);
    const out = await gw.client.send(new CancelKeyDeletionCommand({ KeyId: id }));
    assert.equal(out.KeyId, `arn:verenc:111122223333:key/${id}`);
    const m = (await gw.client.send(new DescribeKeyCommand({ KeyId: id }))).KeyMetadata!;
    assert.deepEqual([m.KeyState, m.Enabled, m.DeletionDate, m.PendingDeletionWindowInDays], ['Disabled', false, undefined, undefined]);
    gw.clock.now = new Date(start.getTime() + 30 * DAY);
    assert.deepEqual((await gw.tick()).deleted, []);
    await assert.rejects(gw.client.send(new CancelKeyDeletionCommand({ KeyId: id })), (e: Error) =>
      e instanceof KMSInvalidStateException && e.message === `arn:verenc:111122223333:key/${id} is not pending deletion.`);
  });

  it('then removes HSM objects of every version, metadata, aliases and tags; the key is NotFound', async () => {
    const start = new Date('2027-02-01T00:00:00Z');
    gw.clock.now = start;
    const id = (await gw.client.send(new CreateKeyCommand({ Tags: [{ TagKey: 't', TagValue: 'v' }] }))).KeyMetadata!.KeyId!;
    await gw.client.send(new RotateKeyOnDemandCommand({ KeyId: id }));
    await gw.client.send(new CreateAliasCommand({ AliasName: 'alias/to-be-deleted', TargetKeyId: id }));
    const { CiphertextBlob } = await gw.client.send(new EncryptCommand({ KeyId: id, Plaintext: Buffer.from('x') }));
    await gw.client.send(new ScheduleKeyDeletionCommand({ KeyId: id, PendingWindowInDays: 7 }));
    gw.clock.now = new Date(start.getTime() + 7 * DAY + 1000);
    assert.deepEqual((await gw.tick()).deleted, [id]);
    await assert.rejects(gw.client.send(new DescribeKeyCommand({ KeyId: id })), NotFoundException);
    assert.deepEqual(await integration().hsm.listKeyObjects(`qkms/${id}/`), [], 'a fresh search finds no object of any version');
    assert.equal((await gw.client.send(new ListAliasesCommand({}))).Aliases!.some((a) => a.AliasName === 'alias/to-be-deleted'), false);
    assert.deepEqual(await gw.deps.keys.listTags(id), []);
    await assert.rejects(gw.client.send(new DecryptCommand({ CiphertextBlob })), InvalidCiphertextException);
    assert.deepEqual((await gw.tick()).deleted, []);
  });
});

describe('Key rotation', () => {
  let gw: Harness;
  before(async () => {
    gw = await startGateway(integration().hsm);
  });
  after(() => gw.close());
  const newKey = async () => (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;

  it('EnableKeyRotation, GetKeyRotationStatus and DisableKeyRotation report period and next date', async () => {
    gw.clock.now = new Date('2027-03-01T00:00:00Z');
    const id = await newKey();
    assert.deepEqual(await gw.client.send(new GetKeyRotationStatusCommand({ KeyId: id })).then((r) => [r.KeyRotationEnabled, r.KeyId]), [false, `arn:verenc:111122223333:key/${id}`]);
    await gw.client.send(new EnableKeyRotationCommand({ KeyId: id }));
    const status = await gw.client.send(new GetKeyRotationStatusCommand({ KeyId: id }));
    assert.deepEqual([status.KeyRotationEnabled, status.RotationPeriodInDays, status.NextRotationDate!.toISOString()], [true, 365, '2028-02-29T00:00:00.000Z']);
    await gw.client.send(new EnableKeyRotationCommand({ KeyId: id, RotationPeriodInDays: 90 }));
    assert.equal((await gw.client.send(new GetKeyRotationStatusCommand({ KeyId: id }))).RotationPeriodInDays, 90);
    await assert.rejects(gw.client.send(new EnableKeyRotationCommand({ KeyId: id, RotationPeriodInDays: 89 })), { name: 'ValidationException' });
    await assert.rejects(gw.client.send(new EnableKeyRotationCommand({ KeyId: id, RotationPeriodInDays: 2561 })), { name: 'ValidationException' });
    await gw.client.send(new DisableKeyRotationCommand({ KeyId: id }));
    assert.equal((await gw.client.send(new GetKeyRotationStatusCommand({ KeyId: id }))).KeyRotationEnabled, false);
  });

  it('rotates automatically when due; old ciphertexts still decrypt and new ones use the new version', async () => {
    const start = new Date('2027-04-01T00:00:00Z');
    gw.clock.now = start;
    const id = await newKey();
    const before = (await gw.client.send(new DescribeKeyCommand({ KeyId: id }))).KeyMetadata!.CurrentKeyMaterialId;
    const old = await gw.client.send(new EncryptCommand({ KeyId: id, Plaintext: Buffer.from('v1 data'), EncryptionContext: { c: '1' } }));
    const oldDk = await gw.client.send(new GenerateDataKeyCommand({ KeyId: id, KeySpec: 'AES_256' }));
    await gw.client.send(new EnableKeyRotationCommand({ KeyId: id, RotationPeriodInDays: 90 }));
    gw.clock.now = new Date(start.getTime() + 89 * DAY);
    assert.ok(!(await gw.tick()).rotated.includes(id));
    gw.clock.now = new Date(start.getTime() + 91 * DAY);
    assert.ok((await gw.tick()).rotated.includes(id));
    const after = (await gw.client.send(new DescribeKeyCommand({ KeyId: id }))).KeyMetadata!.CurrentKeyMaterialId;
    assert.notEqual(after, before);
    const next = (await gw.client.send(new GetKeyRotationStatusCommand({ KeyId: id }))).NextRotationDate!;
    assert.equal(next.getTime(), start.getTime() + 181 * DAY);
    const fresh = await gw.client.send(new EncryptCommand({ KeyId: id, Plaintext: Buffer.from('v2 data') }));
    assert.deepEqual([versionOf(old.CiphertextBlob!), versionOf(fresh.CiphertextBlob!)], [1, 2]);
    const back = await gw.client.send(new DecryptCommand({ CiphertextBlob: old.CiphertextBlob, EncryptionContext: { c: '1' } }));
    assert.equal(Buffer.from(back.Plaintext!).toString(), 'v1 data');
    assert.equal(back.KeyMaterialId, before);
    assert.deepEqual(Buffer.from((await gw.client.send(new DecryptCommand({ CiphertextBlob: oldDk.CiphertextBlob }))).Plaintext!), Buffer.from(oldDk.Plaintext!));
    const rotations = await gw.client.send(new ListKeyRotationsCommand({ KeyId: id }));
    assert.deepEqual(rotations.Rotations!.map((r) => [r.RotationType, r.KeyMaterialId, r.KeyMaterialState]), [['AUTOMATIC', after, 'CURRENT']]);
    const all = await gw.client.send(new ListKeyRotationsCommand({ KeyId: id, IncludeKeyMaterial: 'ALL_KEY_MATERIAL' }));
    assert.deepEqual(all.Rotations!.map((r) => r.KeyMaterialState), ['NON_CURRENT', 'CURRENT']);
  });

  it('rotation needs an Enabled key: Disabled is DisabledException, PendingDeletion KMSInvalidStateException; status works in both', async () => {
    const id = await newKey();
    await gw.client.send(new DisableKeyCommand({ KeyId: id }));
    await assert.rejects(gw.client.send(new EnableKeyRotationCommand({ KeyId: id })), DisabledException);
    await assert.rejects(gw.client.send(new RotateKeyOnDemandCommand({ KeyId: id })), DisabledException);
    assert.equal((await gw.client.send(new GetKeyRotationStatusCommand({ KeyId: id }))).KeyRotationEnabled, false);
    await gw.client.send(new EnableKeyCommand({ KeyId: id }));
    await gw.client.send(new ScheduleKeyDeletionCommand({ KeyId: id }));
    await assert.rejects(gw.client.send(new DisableKeyRotationCommand({ KeyId: id })), KMSInvalidStateException);
    await assert.rejects(gw.client.send(new RotateKeyOnDemandCommand({ KeyId: id })), KMSInvalidStateException);
    assert.ok(await gw.client.send(new GetKeyRotationStatusCommand({ KeyId: id })));
  });

  it('RotateKeyOnDemand allows 25 rotations per key, then LimitExceededException; ConflictException near an automatic one', async () => {
    gw.clock.now = new Date('2027-06-01T00:00:00Z');
    const id = await newKey();
    for (let i = 0; i < 25; i++) assert.equal((await gw.client.send(new RotateKeyOnDemandCommand({ KeyId: id }))).KeyId, `arn:verenc:111122223333:key/${id}`);
    await assert.rejects(gw.client.send(new RotateKeyOnDemandCommand({ KeyId: id })), (e: Error) =>
      e instanceof LimitExceededException && e.message.startsWith('The on-demand rotations limit has been reached for the given keyId.'));
    assert.equal((await gw.client.send(new ListKeyRotationsCommand({ KeyId: id, Limit: 10 }))).Rotations!.length, 10);
    const latest = (await gw.deps.keys.getMaterial(id, 26))!;
    assert.equal(await integration().hsm.countObjects(latest.objects.kek), 1);

    const soon = await newKey();
    await gw.client.send(new EnableKeyRotationCommand({ KeyId: soon, RotationPeriodInDays: 90 }));
    gw.clock.now = new Date(gw.clock.now.getTime() + 90 * DAY - 10 * 60_000);
    await assert.rejects(gw.client.send(new RotateKeyOnDemandCommand({ KeyId: soon })), ConflictException);
  });
});

describe('Rotation across a restart', function () {
  this.timeout(60000);
  it('decrypts ciphertexts of every earlier material version after a restart', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-rot-'));
    try {
      const first = await startChildGateway({ QKMS_DATA_DIR: dataDir });
      const id = (await first.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
      const blobs: Array<{ blob: Uint8Array; text: string }> = [];
      for (let v = 1; v <= 3; v++) {
        const text = `version ${v}`;
        blobs.push({ blob: (await first.client.send(new EncryptCommand({ KeyId: id, Plaintext: Buffer.from(text) }))).CiphertextBlob!, text });
        if (v < 3) await first.client.send(new RotateKeyOnDemandCommand({ KeyId: id }));
      }
      await first.stop();
      const second = await startChildGateway({ QKMS_DATA_DIR: dataDir });
      try {
        assert.match(second.output(), /0 unfinished key-material changes rolled back, 0 objects missing, 0 orphaned, 0 ambiguous/);
        for (const { blob, text } of blobs) {
          assert.equal(Buffer.from((await second.client.send(new DecryptCommand({ CiphertextBlob: blob }))).Plaintext!).toString(), text);
        }
        assert.deepEqual(blobs.map((b) => versionOf(b.blob)), [1, 2, 3]);
      } finally {
        await second.stop();
      }
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
