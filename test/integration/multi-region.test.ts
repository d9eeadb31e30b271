import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import {
  AlreadyExistsException,
  CancelKeyDeletionCommand,
  CreateAliasCommand,
  CreateKeyCommand,
  DecryptCommand,
  DescribeKeyCommand,
  DisableKeyCommand,
  EnableKeyRotationCommand,
  EncryptCommand,
  GenerateDataKeyCommand,
  GetKeyRotationStatusCommand,
  GetParametersForImportCommand,
  ImportKeyMaterialCommand,
  KMSClient,
  KMSInvalidStateException,
  ListAliasesCommand,
  ListKeysCommand,
  ListResourceTagsCommand,
  NotFoundException,
  ReEncryptCommand,
  ReplicateKeyCommand,
  RotateKeyOnDemandCommand,
  ScheduleKeyDeletionCommand,
  SignCommand,
  UnsupportedOperationException,
  UpdatePrimaryRegionCommand,
  VerifyCommand,
} from '@aws-sdk/client-kms';
import { wrapKeyMaterial } from '../support/import-wrap';
import { integration } from '../support/integration-hooks';
import { rawCall, startGateway, TEST_CREDENTIALS, type Harness } from '../support/harness';

const run = promisify(execFile);
const DAY = 86_400_000;
const ACCOUNT = '111122223333';
const arn = (region: string, keyId: string) => `arn:aws:kms:${region}:${ACCOUNT}:key/${keyId}`;

/**
 * Several regions per gateway (QKMS_REGIONS) and multi-Region keys: keys are regional, a
 * multi-Region key's records share one HSM material, and a ciphertext made in one region decrypts
 * with the key's record in another.
 */
describe('Regions and multi-Region keys (JS SDK v3)', function () {
  this.timeout(120000);
  let gw: Harness;
  let east: KMSClient;
  let west: KMSClient;
  let europe: KMSClient;
  before(async () => {
    gw = await startGateway(integration().hsm, { QKMS_REGIONS: 'us-east-1,us-west-2,eu-west-1', QKMS_ARN_FORMAT: 'aws' });
    east = gw.client;
    const client = (region: string) => new KMSClient({ endpoint: gw.url, region, credentials: TEST_CREDENTIALS, maxAttempts: 1 });
    west = client('us-west-2');
    europe = client('eu-west-1');
  });
  after(() => gw.close());

  async function primary(extra: Partial<ConstructorParameters<typeof CreateKeyCommand>[0]> = {}): Promise<string> {
    const m = (await east.send(new CreateKeyCommand({ MultiRegion: true, ...extra }))).KeyMetadata!;
    return m.KeyId!;
  }

  it('keys and aliases are regional: a key of one region is not found in another, by id or ARN; an alias name is taken per region', async () => {
    const eastKey = (await east.send(new CreateKeyCommand({}))).KeyMetadata!;
    assert.equal(eastKey.Arn, arn('us-east-1', eastKey.KeyId!));
    assert.equal(eastKey.MultiRegion, false);
    assert.equal(eastKey.MultiRegionConfiguration, undefined);
    await assert.rejects(west.send(new DescribeKeyCommand({ KeyId: eastKey.KeyId })), (e: Error) =>
      e instanceof NotFoundException && e.message === `Key '${arn('us-west-2', eastKey.KeyId!)}' does not exist`);
    await assert.rejects(west.send(new DescribeKeyCommand({ KeyId: eastKey.Arn })), (e: Error) => e instanceof NotFoundException && e.message === 'Invalid arn us-east-1');
    const westKey = (await west.send(new CreateKeyCommand({}))).KeyMetadata!;
    assert.equal(westKey.Arn, arn('us-west-2', westKey.KeyId!));
    const westIds = (await west.send(new ListKeysCommand({ Limit: 1000 }))).Keys!.map((k) => k.KeyId);
    assert.ok(westIds.includes(westKey.KeyId) && !westIds.includes(eastKey.KeyId));
    await east.send(new CreateAliasCommand({ AliasName: 'alias/same-name', TargetKeyId: eastKey.KeyId }));
    await west.send(new CreateAliasCommand({ AliasName: 'alias/same-name', TargetKeyId: westKey.KeyId }));
    const target = async (client: KMSClient) => (await client.send(new ListAliasesCommand({}))).Aliases!.find((a) => a.AliasName === 'alias/same-name');
    assert.deepEqual([(await target(east))?.TargetKeyId, (await target(east))?.AliasArn], [eastKey.KeyId, `arn:aws:kms:us-east-1:${ACCOUNT}:alias/same-name`]);
    assert.deepEqual([(await target(west))?.TargetKeyId, (await target(west))?.AliasArn], [westKey.KeyId, `arn:aws:kms:us-west-2:${ACCOUNT}:alias/same-name`]);
    assert.equal(await target(europe), undefined);
    // An alias of another region's key cannot be made: the key is not there.
    await assert.rejects(europe.send(new CreateAliasCommand({ AliasName: 'alias/x', TargetKeyId: eastKey.KeyId })), NotFoundException);
  });

  it('a request signed for a region not served names the regions that are', async () => {
    const res = await rawCall(gw.url, 'TrentService.ListKeys', '{}', { region: 'ap-south-1' });
    assert.equal(res.status, 400);
    assert.equal(res.json!.__type, 'InvalidSignatureException');
    assert.equal(res.json!.message, "Credential should be scoped to a valid region, not 'ap-south-1'. This gateway serves regions 'us-east-1', 'us-west-2', 'eu-west-1' (QKMS_REGIONS): set the client's region to one of them.");
  });

  it('CreateKey MultiRegion: an mrk- id, the primary of its own configuration; ReplicateKey makes its record in another region with its own description, policy and tags', async () => {
    const created = (await east.send(new CreateKeyCommand({ MultiRegion: true, Description: 'primary' }))).KeyMetadata!;
    const id = created.KeyId!;
    assert.match(id, /^mrk-[0-9a-f]{32}$/);
    assert.equal(created.MultiRegion, true);
    assert.deepEqual(created.MultiRegionConfiguration, { MultiRegionKeyType: 'PRIMARY', PrimaryKey: { Arn: arn('us-east-1', id), Region: 'us-east-1' }, ReplicaKeys: [] });
    const policy = JSON.stringify({ Version: '2012-10-17', Statement: [{ Sid: 'root', Effect: 'Allow', Principal: { AWS: `arn:aws:iam::${ACCOUNT}:root` }, Action: 'kms:*', Resource: '*' }] });
    const out = await east.send(new ReplicateKeyCommand({ KeyId: id, ReplicaRegion: 'us-west-2', Description: 'replica', Policy: policy, Tags: [{ TagKey: 'side', TagValue: 'west' }] }));
    const replica = out.ReplicaKeyMetadata!;
    assert.deepEqual([replica.KeyId, replica.Arn, replica.Description, replica.KeyState, replica.Enabled, replica.MultiRegion], [id, arn('us-west-2', id), 'replica', 'Enabled', true, true]);
    assert.deepEqual(replica.MultiRegionConfiguration, { MultiRegionKeyType: 'REPLICA', PrimaryKey: { Arn: arn('us-east-1', id), Region: 'us-east-1' }, ReplicaKeys: [{ Arn: arn('us-west-2', id), Region: 'us-west-2' }] });
    assert.equal(out.ReplicaPolicy, policy);
    assert.deepEqual(out.ReplicaTags, [{ TagKey: 'side', TagValue: 'west' }]);
    // Shared: spec, usage, origin, material. Regional: description, tags, state.
    assert.deepEqual([replica.KeySpec, replica.KeyUsage, replica.Origin, replica.CurrentKeyMaterialId], [created.KeySpec, created.KeyUsage, created.Origin, created.CurrentKeyMaterialId]);
    const primaryNow = (await east.send(new DescribeKeyCommand({ KeyId: id }))).KeyMetadata!;
    assert.equal(primaryNow.Description, 'primary');
    assert.deepEqual(primaryNow.MultiRegionConfiguration!.ReplicaKeys, [{ Arn: arn('us-west-2', id), Region: 'us-west-2' }]);
    assert.deepEqual((await east.send(new ListResourceTagsCommand({ KeyId: id }))).Tags, []);
    assert.deepEqual((await west.send(new ListResourceTagsCommand({ KeyId: id }))).Tags, [{ TagKey: 'side', TagValue: 'west' }]);
    await west.send(new DisableKeyCommand({ KeyId: id }));
    assert.equal((await east.send(new DescribeKeyCommand({ KeyId: id }))).KeyMetadata!.KeyState, 'Enabled');
    assert.equal((await west.send(new DescribeKeyCommand({ KeyId: id }))).KeyMetadata!.KeyState, 'Disabled');
  });

  it('ReplicateKey refusals: a region holding the key, a region not served, a replica, a single-Region key', async () => {
    const id = await primary();
    await east.send(new ReplicateKeyCommand({ KeyId: id, ReplicaRegion: 'us-west-2' }));
    const refused = (p: Promise<unknown>, type: new (...a: any[]) => Error, message: string) =>
      assert.rejects(p, (e: Error) => e instanceof type && e.message === message);
    await refused(east.send(new ReplicateKeyCommand({ KeyId: id, ReplicaRegion: 'us-west-2' })), AlreadyExistsException, `${arn('us-west-2', id)} already exists`);
    await refused(east.send(new ReplicateKeyCommand({ KeyId: id, ReplicaRegion: 'us-east-1' })), AlreadyExistsException, `${arn('us-east-1', id)} already exists`);
    await refused(east.send(new ReplicateKeyCommand({ KeyId: id, ReplicaRegion: 'ap-south-1' })), UnsupportedOperationException,
      'Region ap-south-1 is not served by this gateway (QKMS_REGIONS: us-east-1, us-west-2, eu-west-1).');
    await refused(west.send(new ReplicateKeyCommand({ KeyId: id, ReplicaRegion: 'eu-west-1' })), UnsupportedOperationException,
      `${arn('us-west-2', id)} is not a multi-Region primary key: its primary is in us-east-1.`);
    const single = (await east.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    await refused(east.send(new ReplicateKeyCommand({ KeyId: single, ReplicaRegion: 'eu-west-1' })), UnsupportedOperationException, `${arn('us-east-1', single)} is not a multi-Region key.`);
    await assert.rejects(east.send(new ReplicateKeyCommand({ KeyId: id, ReplicaRegion: 'not a region' })), (e: Error) => e.name === 'ValidationException');
    await refused(east.send(new CreateKeyCommand({ MultiRegion: true, Origin: 'EXTERNAL' })), UnsupportedOperationException,
      'Multi-Region keys with Origin EXTERNAL are not supported by this gateway: a multi-Region key shares one HSM material among its regions, so its material is generated in the HSM (AWS_KMS).');
  });

  it('a ciphertext made in one region decrypts in another, across rotations; signatures verify across regions', async () => {
    const id = await primary();
    await east.send(new ReplicateKeyCommand({ KeyId: id, ReplicaRegion: 'eu-west-1' }));
    const context = { purpose: 'multi-region' };
    const sealed = await east.send(new EncryptCommand({ KeyId: id, Plaintext: Buffer.from('made in us-east-1'), EncryptionContext: context }));
    assert.equal(sealed.KeyId, arn('us-east-1', id));
    const opened = await europe.send(new DecryptCommand({ CiphertextBlob: sealed.CiphertextBlob, EncryptionContext: context }));
    assert.deepEqual([Buffer.from(opened.Plaintext!).toString(), opened.KeyId], ['made in us-east-1', arn('eu-west-1', id)]);
    const withKeyId = await europe.send(new DecryptCommand({ KeyId: arn('eu-west-1', id), CiphertextBlob: sealed.CiphertextBlob, EncryptionContext: context }));
    assert.equal(Buffer.from(withKeyId.Plaintext!).toString(), 'made in us-east-1');
    // The other way, after an on-demand rotation from the primary: the replica uses the new material too.
    await east.send(new RotateKeyOnDemandCommand({ KeyId: id }));
    const dataKey = await europe.send(new GenerateDataKeyCommand({ KeyId: id, KeySpec: 'AES_256' }));
    assert.equal(Buffer.from(dataKey.CiphertextBlob!).readUInt32BE(18), 2, 'the replica encrypts under the version the primary rotated to');
    const back = await east.send(new DecryptCommand({ CiphertextBlob: dataKey.CiphertextBlob }));
    assert.deepEqual(Buffer.from(back.Plaintext!), Buffer.from(dataKey.Plaintext!));
    const reencrypted = await europe.send(new ReEncryptCommand({ CiphertextBlob: sealed.CiphertextBlob, SourceEncryptionContext: context, DestinationKeyId: id }));
    assert.equal(Buffer.from((await east.send(new DecryptCommand({ CiphertextBlob: reencrypted.CiphertextBlob }))).Plaintext!).toString(), 'made in us-east-1');
    const [primaryMeta, replicaMeta] = await Promise.all([east, europe].map(async (c) => (await c.send(new DescribeKeyCommand({ KeyId: id }))).KeyMetadata!));
    assert.equal(primaryMeta.CurrentKeyMaterialId, replicaMeta.CurrentKeyMaterialId);
    // A single-Region key's ciphertext does not decrypt in another region: the key is not there.
    const single = (await east.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    const singleBlob = (await east.send(new EncryptCommand({ KeyId: single, Plaintext: Buffer.from('x') }))).CiphertextBlob;
    await assert.rejects(europe.send(new DecryptCommand({ CiphertextBlob: singleBlob })), (e: Error) => e.name === 'InvalidCiphertextException');

    const signing = await primary({ KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' });
    await east.send(new ReplicateKeyCommand({ KeyId: signing, ReplicaRegion: 'us-west-2' }));
    const signed = await west.send(new SignCommand({ KeyId: signing, Message: Buffer.from('m'), SigningAlgorithm: 'ECDSA_SHA_256' }));
    const verified = await east.send(new VerifyCommand({ KeyId: signing, Message: Buffer.from('m'), Signature: signed.Signature, SigningAlgorithm: 'ECDSA_SHA_256' }));
    assert.equal(verified.SignatureValid, true);
  });

  it('rotation is managed from the primary: a replica refuses EnableKeyRotation and RotateKeyOnDemand and shows the primary\'s status', async () => {
    const id = await primary();
    await east.send(new ReplicateKeyCommand({ KeyId: id, ReplicaRegion: 'us-west-2' }));
    const notHere = `${arn('us-west-2', id)} is a multi-Region replica key: its rotation is managed from its primary key in us-east-1.`;
    await assert.rejects(west.send(new EnableKeyRotationCommand({ KeyId: id })), (e: Error) => e instanceof UnsupportedOperationException && e.message === notHere);
    await assert.rejects(west.send(new RotateKeyOnDemandCommand({ KeyId: id })), (e: Error) => e instanceof UnsupportedOperationException && e.message === notHere);
    await east.send(new EnableKeyRotationCommand({ KeyId: id, RotationPeriodInDays: 100 }));
    const status = await west.send(new GetKeyRotationStatusCommand({ KeyId: id }));
    assert.deepEqual([status.KeyRotationEnabled, status.RotationPeriodInDays], [true, 100]);
  });

  it('UpdatePrimaryRegion makes the replica the primary and the primary a replica; then only the new primary replicates', async () => {
    const id = await primary();
    await east.send(new ReplicateKeyCommand({ KeyId: id, ReplicaRegion: 'us-west-2' }));
    await assert.rejects(east.send(new UpdatePrimaryRegionCommand({ KeyId: id, PrimaryRegion: 'eu-west-1' })), (e: Error) =>
      e instanceof NotFoundException && e.message === `Key '${arn('eu-west-1', id)}' does not exist`);
    await east.send(new UpdatePrimaryRegionCommand({ KeyId: id, PrimaryRegion: 'us-west-2' }));
    const [e, w] = await Promise.all([east, west].map(async (c) => (await c.send(new DescribeKeyCommand({ KeyId: id }))).KeyMetadata!.MultiRegionConfiguration!));
    assert.deepEqual(e, { MultiRegionKeyType: 'REPLICA', PrimaryKey: { Arn: arn('us-west-2', id), Region: 'us-west-2' }, ReplicaKeys: [{ Arn: arn('us-east-1', id), Region: 'us-east-1' }] });
    assert.deepEqual(w, { ...e, MultiRegionKeyType: 'PRIMARY' });
    await assert.rejects(east.send(new ReplicateKeyCommand({ KeyId: id, ReplicaRegion: 'eu-west-1' })), UnsupportedOperationException);
    await assert.rejects(east.send(new UpdatePrimaryRegionCommand({ KeyId: id, PrimaryRegion: 'us-west-2' })), UnsupportedOperationException);
    await west.send(new ReplicateKeyCommand({ KeyId: id, ReplicaRegion: 'eu-west-1' }));
    assert.deepEqual((await europe.send(new DescribeKeyCommand({ KeyId: id }))).KeyMetadata!.MultiRegionConfiguration!.ReplicaKeys!.map((r) => r.Region), ['eu-west-1', 'us-east-1']);
  });

  it('deleting a primary waits in PendingReplicaDeletion for its replicas; the HSM material goes with the last record only', async () => {
    const start = new Date('2027-03-01T00:00:00Z');
    gw.clock.now = start;
    const id = await primary();
    await east.send(new ReplicateKeyCommand({ KeyId: id, ReplicaRegion: 'us-west-2' }));
    const blob = (await east.send(new EncryptCommand({ KeyId: id, Plaintext: Buffer.from('kept') }))).CiphertextBlob;
    const scheduled = await east.send(new ScheduleKeyDeletionCommand({ KeyId: id, PendingWindowInDays: 7 }));
    assert.deepEqual([scheduled.KeyState, scheduled.PendingWindowInDays, scheduled.DeletionDate], ['PendingReplicaDeletion', 7, undefined]);
    await assert.rejects(east.send(new EncryptCommand({ KeyId: id, Plaintext: Buffer.from('x') })), (e: Error) =>
      e instanceof KMSInvalidStateException && e.message === `${arn('us-east-1', id)} is pending replica deletion.`);
    // Cancelled, then scheduled again: a cancel from PendingReplicaDeletion leaves it Disabled, as from PendingDeletion.
    await east.send(new CancelKeyDeletionCommand({ KeyId: id }));
    assert.equal((await east.send(new DescribeKeyCommand({ KeyId: id }))).KeyMetadata!.KeyState, 'Disabled');
    await east.send(new ScheduleKeyDeletionCommand({ KeyId: id, PendingWindowInDays: 7 }));
    await west.send(new ScheduleKeyDeletionCommand({ KeyId: id, PendingWindowInDays: 7 }));
    gw.clock.now = new Date(start.getTime() + 7 * DAY + 1000);
    await gw.tick(); // the replica goes (regions run in order: us-east-1's primary still saw it)
    await gw.tick(); // the primary's waiting period begins
    await assert.rejects(west.send(new DescribeKeyCommand({ KeyId: id })), NotFoundException);
    const waiting = (await east.send(new DescribeKeyCommand({ KeyId: id }))).KeyMetadata!;
    assert.deepEqual([waiting.KeyState, waiting.MultiRegionConfiguration!.ReplicaKeys], ['PendingDeletion', []]);
    assert.equal(waiting.DeletionDate!.getTime(), start.getTime() + 14 * DAY + 1000);
    assert.ok((await integration().hsm.listKeyObjects(`qkms/${id}/`)).length > 0, 'the material stays while the primary is there');
    await east.send(new CancelKeyDeletionCommand({ KeyId: id }));
    await east.send(new DisableKeyCommand({ KeyId: id }));
    assert.equal((await east.send(new DescribeKeyCommand({ KeyId: id }))).KeyMetadata!.KeyState, 'Disabled');
    await east.send(new ScheduleKeyDeletionCommand({ KeyId: id, PendingWindowInDays: 7 }));
    gw.clock.now = new Date(start.getTime() + 15 * DAY);
    await gw.tick();
    await assert.rejects(east.send(new DescribeKeyCommand({ KeyId: id })), NotFoundException);
    assert.deepEqual(await integration().hsm.listKeyObjects(`qkms/${id}/`), [], 'the last record took the material with it');
    await assert.rejects(east.send(new DecryptCommand({ CiphertextBlob: blob })), (e: Error) => e.name === 'InvalidCiphertextException');
  });

  it('imported material of a key in another region than the home one expires there', async () => {
    const start = new Date('2027-07-01T00:00:00Z');
    gw.clock.now = start;
    const keyId = (await west.send(new CreateKeyCommand({ Origin: 'EXTERNAL' }))).KeyMetadata!.KeyId!;
    const params = await west.send(new GetParametersForImportCommand({ KeyId: keyId, WrappingAlgorithm: 'RSAES_OAEP_SHA_256', WrappingKeySpec: 'RSA_2048' }));
    await west.send(new ImportKeyMaterialCommand({
      KeyId: keyId, ImportToken: params.ImportToken, EncryptedKeyMaterial: wrapKeyMaterial(params.PublicKey!, 'RSAES_OAEP_SHA_256', crypto.randomBytes(32)),
      ExpirationModel: 'KEY_MATERIAL_EXPIRES', ValidTo: new Date(start.getTime() + DAY),
    }));
    assert.equal((await west.send(new DescribeKeyCommand({ KeyId: keyId }))).KeyMetadata!.KeyState, 'Enabled');
    gw.clock.now = new Date(start.getTime() + 2 * DAY);
    await gw.tick();
    assert.equal((await west.send(new DescribeKeyCommand({ KeyId: keyId }))).KeyMetadata!.KeyState, 'PendingImport');
  });

  it('a replica deleted before its primary leaves the material to the primary', async () => {
    const start = new Date('2027-05-01T00:00:00Z');
    gw.clock.now = start;
    const id = await primary();
    await east.send(new ReplicateKeyCommand({ KeyId: id, ReplicaRegion: 'eu-west-1' }));
    const blob = (await europe.send(new EncryptCommand({ KeyId: id, Plaintext: Buffer.from('from europe') }))).CiphertextBlob;
    await europe.send(new ScheduleKeyDeletionCommand({ KeyId: id, PendingWindowInDays: 7 }));
    gw.clock.now = new Date(start.getTime() + 8 * DAY);
    await gw.tick();
    await assert.rejects(europe.send(new DescribeKeyCommand({ KeyId: id })), NotFoundException);
    assert.equal(Buffer.from((await east.send(new DecryptCommand({ CiphertextBlob: blob }))).Plaintext!).toString(), 'from europe');
    // And it can be replicated there again.
    await east.send(new ReplicateKeyCommand({ KeyId: id, ReplicaRegion: 'eu-west-1' }));
    assert.equal(Buffer.from((await europe.send(new DecryptCommand({ CiphertextBlob: blob }))).Plaintext!).toString(), 'from europe');
  });

  it('the scheduler\'s audit records name the record it acted on: the replica it deleted, the primary\'s region it rotated from', async () => {
    const start = new Date('2027-09-01T00:00:00Z');
    gw.clock.now = start;
    const deleted = await primary();
    await east.send(new ReplicateKeyCommand({ KeyId: deleted, ReplicaRegion: 'eu-west-1' }));
    await europe.send(new ScheduleKeyDeletionCommand({ KeyId: deleted, PendingWindowInDays: 7 }));
    const rotated = await primary();
    await east.send(new ReplicateKeyCommand({ KeyId: rotated, ReplicaRegion: 'us-west-2' }));
    await east.send(new UpdatePrimaryRegionCommand({ KeyId: rotated, PrimaryRegion: 'us-west-2' }));
    await west.send(new EnableKeyRotationCommand({ KeyId: rotated, RotationPeriodInDays: 90 }));
    gw.clock.now = new Date(start.getTime() + 91 * DAY);
    await gw.tick();
    await assert.rejects(europe.send(new DescribeKeyCommand({ KeyId: deleted })), NotFoundException);
    assert.equal((await east.send(new DescribeKeyCommand({ KeyId: deleted }))).KeyMetadata!.KeyState, 'Enabled', 'the primary stays');
    const scheduled = (await gw.auditRecords()).filter((r) => r.sourceIp === 'scheduler' && [deleted, rotated].some((id) => r.keyArn?.endsWith(`/${id}`)));
    assert.deepEqual(scheduled.map((r) => [r.operation, r.keyArn]).sort(), [['DeleteKey', arn('eu-west-1', deleted)], ['RotateKey', arn('us-west-2', rotated)]]);
  });
});

describe('Multi-Region keys through boto3', function () {
  this.timeout(120000);
  let gw: Harness;
  before(async () => {
    gw = await startGateway(integration().hsm, { QKMS_REGIONS: 'us-east-1,eu-west-1', QKMS_ARN_FORMAT: 'aws' });
  });
  after(() => gw.close());

  it('creates a primary in us-east-1, replicates it to eu-west-1, decrypts there what us-east-1 encrypted, and moves the primary', async function () {
    const python = ['python3', '/usr/bin/python3'].find((py) => spawnSync(py, ['-c', 'import boto3']).status === 0);
    if (!python) {
      console.log('      (skipped: no python3 here has boto3)');
      this.skip();
    }
    const script = `
import json, sys, boto3
def client(region):
    return boto3.client('kms', endpoint_url=sys.argv[1], region_name=region)
east, europe = client('us-east-1'), client('eu-west-1')
key = east.create_key(MultiRegion=True, Description='boto3 primary')['KeyMetadata']
replica = east.replicate_key(KeyId=key['KeyId'], ReplicaRegion='eu-west-1', Description='boto3 replica')['ReplicaKeyMetadata']
blob = east.encrypt(KeyId=key['Arn'], Plaintext=b'across regions', EncryptionContext={'k': 'v'})['CiphertextBlob']
plain = europe.decrypt(CiphertextBlob=blob, EncryptionContext={'k': 'v'})
east.update_primary_region(KeyId=key['KeyId'], PrimaryRegion='eu-west-1')
after = europe.describe_key(KeyId=key['KeyId'])['KeyMetadata']['MultiRegionConfiguration']
try:
    east.replicate_key(KeyId=key['KeyId'], ReplicaRegion='eu-west-1')
    refused = None
except east.exceptions.UnsupportedOperationException as e:
    refused = e.response['Error']['Code']
print(json.dumps({'id': key['KeyId'], 'replica_arn': replica['Arn'], 'replica_type': replica['MultiRegionConfiguration']['MultiRegionKeyType'],
                  'plain': plain['Plaintext'].decode(), 'decrypted_by': plain['KeyId'], 'after': after, 'refused': refused}))
`;
    const env = { ...process.env, AWS_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey };
    const out = JSON.parse((await run(python!, ['-c', script, gw.url], { env })).stdout);
    assert.match(out.id, /^mrk-[0-9a-f]{32}$/);
    assert.deepEqual([out.replica_arn, out.replica_type, out.plain, out.decrypted_by], [arn('eu-west-1', out.id), 'REPLICA', 'across regions', arn('eu-west-1', out.id)]);
    assert.deepEqual(out.after, { MultiRegionKeyType: 'PRIMARY', PrimaryKey: { Arn: arn('eu-west-1', out.id), Region: 'eu-west-1' }, ReplicaKeys: [{ Arn: arn('us-east-1', out.id), Region: 'us-east-1' }] });
    assert.equal(out.refused, 'UnsupportedOperationException');
  });
});

describe('A store holding keys in regions not served', function () {
  this.timeout(60000);

  it('is named at start-up (log and /ready): changing QKMS_REGION moves no key, and serving the region again finds them', async function () {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-regions-'));
    const first = await startGateway(integration().hsm, { QKMS_DATA_DIR: dataDir }, { single: 'restarts on its own SQLite data dir' });
    const keyId = (await first.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    await first.close();
    const moved = await startGateway(integration().hsm, { QKMS_DATA_DIR: dataDir, QKMS_REGION: 'eu-west-1' }, { single: 'restarts on its own SQLite data dir' });
    try {
      assert.match(moved.logText(), /the key store holds keys in regions this gateway does not serve.*"regions":\["us-east-1"\]/);
      assert.match(moved.deps.startup, /keys in regions not served: us-east-1$/);
      await assert.rejects(moved.client.send(new DescribeKeyCommand({ KeyId: keyId })), NotFoundException);
    } finally {
      await moved.close();
    }
    const both = await startGateway(integration().hsm, { QKMS_DATA_DIR: dataDir, QKMS_REGION: 'eu-west-1', QKMS_REGIONS: 'eu-west-1,us-east-1', QKMS_ARN_FORMAT: 'aws' }, { single: 'restarts on its own SQLite data dir' });
    try {
      assert.doesNotMatch(both.logText(), /does not serve/);
      const home = new KMSClient({ endpoint: both.url, region: 'us-east-1', credentials: TEST_CREDENTIALS, maxAttempts: 1 });
      assert.equal((await home.send(new DescribeKeyCommand({ KeyId: keyId }))).KeyMetadata!.Arn, arn('us-east-1', keyId));
    } finally {
      await both.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
