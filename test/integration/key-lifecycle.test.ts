import assert from 'node:assert/strict';
import {
  CreateKeyCommand,
  DescribeKeyCommand,
  DisableKeyCommand,
  EnableKeyCommand,
  InvalidArnException,
  InvalidMarkerException,
  KMSInvalidStateException,
  ListKeysCommand,
  paginateListKeys,
  ScheduleKeyDeletionCommand,
  TagException,
  UnsupportedOperationException,
  MalformedPolicyDocumentException,
} from '@aws-sdk/client-kms';
import { integration } from '../support/integration-hooks';
import { rawCall, startGateway, type Harness } from '../support/harness';

// ValidationException is not in the KMS model: the SDK raises KMSServiceException named after it.
describe('Key lifecycle: CreateKey, DescribeKey, ListKeys, EnableKey, DisableKey, ScheduleKeyDeletion', () => {
  let gw: Harness;
  before(async () => {
    gw = await startGateway(integration().hsm);
  });
  after(() => gw.close());
  const describeKey = async (KeyId: string) => (await gw.client.send(new DescribeKeyCommand({ KeyId }))).KeyMetadata!;

  it('CreateKey returns full KeyMetadata and stores Description and Tags', async () => {
    const before = Math.floor(Date.now() / 1000);
    const { KeyMetadata: m } = await gw.client.send(
      new CreateKeyCommand({ Description: 'orders', Tags: [{ TagKey: 'team', TagValue: 'payments' }], KeyUsage: 'ENCRYPT_DECRYPT', KeySpec: 'SYMMETRIC_DEFAULT' }),
    );
    assert.match(m!.KeyId!, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    assert.equal(m!.Arn, `arn:verenc:111122223333:key/${m!.KeyId}`);
    assert.equal(m!.AWSAccountId, '111122223333');
    assert.equal(m!.Description, 'orders');
    assert.equal(m!.Enabled, true);
    assert.equal(m!.KeyState, 'Enabled');
    assert.equal(m!.KeyUsage, 'ENCRYPT_DECRYPT');
    assert.equal(m!.KeySpec, 'SYMMETRIC_DEFAULT');
    assert.equal(m!.CustomerMasterKeySpec, 'SYMMETRIC_DEFAULT');
    assert.deepEqual(m!.EncryptionAlgorithms, ['SYMMETRIC_DEFAULT']);
    assert.equal(m!.Origin, 'AWS_KMS');
    assert.equal(m!.KeyManager, 'CUSTOMER');
    assert.equal(m!.MultiRegion, false);
    assert.match(m!.CurrentKeyMaterialId!, /^[0-9a-f]{64}$/);
    assert.ok(m!.CreationDate!.getTime() / 1000 >= before - 1);
    assert.deepEqual(await gw.deps.keys.listTags(m!.KeyId!), [{ key: 'team', value: 'payments' }]);
    assert.deepEqual(await describeKey(m!.KeyId!), m);
  });

  it('CreateKey validates specs, tags, policy and unsupported options like AWS', async () => {
    await assert.rejects(gw.client.send(new CreateKeyCommand({ KeySpec: 'RSA_2048' })), (e: Error) =>
      e.name === 'ValidationException' && e.message === 'You must specify a KeyUsage value for all KMS keys except for symmetric encryption keys.');
    await assert.rejects(gw.client.send(new CreateKeyCommand({ KeyUsage: 'SIGN_VERIFY' })), (e: Error) =>
      e.name === 'ValidationException' && e.message === 'KeyUsage SIGN_VERIFY is not compatible with KeySpec SYMMETRIC_DEFAULT');
    await assert.rejects(gw.client.send(new CreateKeyCommand({ KeySpec: 'ML_DSA_44', KeyUsage: 'SIGN_VERIFY' })), UnsupportedOperationException);
    await assert.rejects(gw.client.send(new CreateKeyCommand({ KeySpec: 'SM2', KeyUsage: 'SIGN_VERIFY' })), UnsupportedOperationException);
    await assert.rejects(gw.client.send(new CreateKeyCommand({ Origin: 'EXTERNAL_KEY_STORE' })), UnsupportedOperationException);
    await assert.rejects(gw.client.send(new CreateKeyCommand({ Origin: 'EXTERNAL', KeySpec: 'ECC_NIST_EDWARDS25519', KeyUsage: 'SIGN_VERIFY' })), UnsupportedOperationException);
    await assert.rejects(gw.client.send(new CreateKeyCommand({ MultiRegion: true, Origin: 'EXTERNAL' })), UnsupportedOperationException);
    await assert.rejects(gw.client.send(new CreateKeyCommand({ Tags: [{ TagKey: 'aws:x', TagValue: 'y' }] })), (e: Error) => e instanceof TagException && e.message === 'Tags beginning with aws: are reserved');
    await assert.rejects(gw.client.send(new CreateKeyCommand({ Tags: [{ TagKey: 'a', TagValue: '1' }, { TagKey: 'a', TagValue: '2' }] })), (e: Error) => e instanceof TagException && e.message === 'Duplicate tag keys');
    await assert.rejects(gw.client.send(new CreateKeyCommand({ Tags: Array.from({ length: 51 }, (_, i) => ({ TagKey: `k${i}`, TagValue: '' })) })), (e: Error) => e instanceof TagException && e.message === 'Too many tags');
    await assert.rejects(gw.client.send(new CreateKeyCommand({ Policy: 'not json' })), MalformedPolicyDocumentException);
    const bad = await rawCall(gw.url, 'TrentService.CreateKey', JSON.stringify({ KeySpec: 'AES_999' }));
    assert.match(bad.json!.message, /Value 'AES_999' at 'keySpec' failed to satisfy constraint: Member must satisfy enum value set: \[RSA_2048/);
  });

  it('DisableKey and EnableKey are idempotent and reflected in DescribeKey', async () => {
    const id = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    await gw.client.send(new DisableKeyCommand({ KeyId: id }));
    await gw.client.send(new DisableKeyCommand({ KeyId: id }));
    assert.deepEqual([(await describeKey(id)).KeyState, (await describeKey(id)).Enabled], ['Disabled', false]);
    await gw.client.send(new EnableKeyCommand({ KeyId: `arn:verenc:111122223333:key/${id}` }));
    await gw.client.send(new EnableKeyCommand({ KeyId: id }));
    assert.equal((await describeKey(id)).KeyState, 'Enabled');
    const empty = await rawCall(gw.url, 'TrentService.DisableKey', JSON.stringify({ KeyId: id }));
    assert.deepEqual([empty.status, empty.text], [200, '']);
  });

  it('EnableKey and DisableKey refuse aliases (InvalidArnException)', async () => {
    await assert.rejects(gw.client.send(new EnableKeyCommand({ KeyId: 'alias/some' })), InvalidArnException);
  });

  it('ScheduleKeyDeletion sets state and dates from the clock; the window is 7..30 days, default 30', async () => {
    const id = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    gw.clock.now = new Date('2026-12-01T00:00:00Z');
    const out = await gw.client.send(new ScheduleKeyDeletionCommand({ KeyId: id }));
    gw.clock.now = new Date();
    assert.equal(out.KeyId, `arn:verenc:111122223333:key/${id}`);
    assert.equal(out.KeyState, 'PendingDeletion');
    assert.equal(out.PendingWindowInDays, 30);
    assert.equal(out.DeletionDate!.toISOString(), '2026-12-31T00:00:00.000Z');
    const m = await describeKey(id);
    assert.deepEqual([m.KeyState, m.Enabled, m.PendingDeletionWindowInDays, m.DeletionDate!.toISOString()], ['PendingDeletion', false, 30, '2026-12-31T00:00:00.000Z']);
    await assert.rejects(gw.client.send(new ScheduleKeyDeletionCommand({ KeyId: id })), (e: Error) => e instanceof KMSInvalidStateException && e.message.endsWith('is pending deletion.'));
    await assert.rejects(gw.client.send(new EnableKeyCommand({ KeyId: id })), KMSInvalidStateException);
    await assert.rejects(gw.client.send(new DisableKeyCommand({ KeyId: id })), KMSInvalidStateException);
    const other = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    await assert.rejects(gw.client.send(new ScheduleKeyDeletionCommand({ KeyId: other, PendingWindowInDays: 6 })), (e: Error) => e.name === 'ValidationException' && /greater than or equal to 7/.test(e.message));
    await assert.rejects(gw.client.send(new ScheduleKeyDeletionCommand({ KeyId: other, PendingWindowInDays: 31 })), { name: 'ValidationException' });
    assert.equal((await gw.client.send(new ScheduleKeyDeletionCommand({ KeyId: other, PendingWindowInDays: 7 }))).PendingWindowInDays, 7);
  });

  it('ListKeys pages with Limit and Marker, never sends NextMarker on the last page, and the SDK paginator ends', async () => {
    for (let i = 0; i < 5; i++) await gw.client.send(new CreateKeyCommand({}));
    const all: string[] = [];
    for await (const page of paginateListKeys({ client: gw.client, pageSize: 2 }, {})) {
      all.push(...page.Keys!.map((k) => k.KeyId!));
      assert.equal(page.Truncated, page.NextMarker !== undefined);
      for (const k of page.Keys!) assert.equal(k.KeyArn, `arn:verenc:111122223333:key/${k.KeyId}`);
    }
    assert.equal(new Set(all).size, all.length);
    const everything = await gw.client.send(new ListKeysCommand({ Limit: 1000 }));
    assert.deepEqual(everything.Keys!.map((k) => k.KeyId), all);
    assert.equal(everything.Truncated, false);
    assert.equal(everything.NextMarker, undefined);
    const raw = await rawCall(gw.url, 'TrentService.ListKeys', '{}');
    assert.ok(!('NextMarker' in raw.json!) || raw.json!.Truncated);
  });

  it('ListKeys rejects forged markers with InvalidMarkerException and out-of-range limits with ValidationException', async () => {
    const first = await gw.client.send(new ListKeysCommand({ Limit: 1 }));
    const marker = first.NextMarker!;
    const forged = Buffer.from(marker, 'base64url');
    forged[7] ^= 1;
    await assert.rejects(gw.client.send(new ListKeysCommand({ Marker: forged.toString('base64url') })), InvalidMarkerException);
    await assert.rejects(gw.client.send(new ListKeysCommand({ Marker: 'garbage' })), InvalidMarkerException);
    await assert.rejects(gw.client.send(new ListKeysCommand({ Limit: 0 })), { name: 'ValidationException' });
    await assert.rejects(gw.client.send(new ListKeysCommand({ Limit: 1001 })), { name: 'ValidationException' });
    assert.equal((await gw.client.send(new ListKeysCommand({ Marker: marker, Limit: 1 }))).Keys!.length, 1);
  });
});
