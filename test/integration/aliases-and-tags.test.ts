import assert from 'node:assert/strict';
import {
  AlreadyExistsException,
  CreateAliasCommand,
  CreateKeyCommand,
  DecryptCommand,
  DeleteAliasCommand,
  DescribeKeyCommand,
  EncryptCommand,
  GenerateDataKeyCommand,
  InvalidAliasNameException,
  InvalidArnException,
  KMSInvalidStateException,
  ListAliasesCommand,
  ListResourceTagsCommand,
  NotFoundException,
  paginateListAliases,
  ScheduleKeyDeletionCommand,
  TagException,
  TagResourceCommand,
  UntagResourceCommand,
  UpdateAliasCommand,
  UpdateKeyDescriptionCommand,
} from '@aws-sdk/client-kms';
import { integration } from '../support/integration-hooks';
import { startGateway, type Harness } from '../support/harness';

describe('Aliases', () => {
  let gw: Harness;
  const newKey = async () => (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
  before(async () => {
    gw = await startGateway(integration().hsm);
  });
  after(() => gw.close());

  it('CreateAlias makes the name usable wherever aliases are accepted, as name and as ARN', async () => {
    const id = await newKey();
    await gw.client.send(new CreateAliasCommand({ AliasName: 'alias/orders', TargetKeyId: id }));
    assert.equal((await gw.client.send(new DescribeKeyCommand({ KeyId: 'alias/orders' }))).KeyMetadata!.KeyId, id);
    const dk = await gw.client.send(new GenerateDataKeyCommand({ KeyId: 'arn:verenc:111122223333:alias/orders', KeySpec: 'AES_256' }));
    assert.equal(dk.KeyId, `arn:verenc:111122223333:key/${id}`);
    const enc = await gw.client.send(new EncryptCommand({ KeyId: 'alias/orders', Plaintext: Buffer.from('x') }));
    assert.ok((await gw.client.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob, KeyId: 'alias/orders' }))).Plaintext);
  });

  it('refuses duplicate, malformed and reserved names, and alias targets, like AWS', async () => {
    const id = await newKey();
    await gw.client.send(new CreateAliasCommand({ AliasName: 'alias/dup', TargetKeyId: id }));
    await assert.rejects(gw.client.send(new CreateAliasCommand({ AliasName: 'alias/dup', TargetKeyId: id })), (e: Error) =>
      e instanceof AlreadyExistsException && e.message === 'An alias with the name arn:verenc:111122223333:alias/dup already exists');
    await assert.rejects(gw.client.send(new CreateAliasCommand({ AliasName: 'orders', TargetKeyId: id })), (e: Error) =>
      e.name === 'ValidationException' && e.message.startsWith('Alias must start with the prefix "alias/".'));
    await assert.rejects(gw.client.send(new CreateAliasCommand({ AliasName: 'alias/Service:Test', TargetKeyId: id })), (e: Error) =>
      e.name === 'ValidationException' && e.message === 'alias/Service:Test contains invalid characters for an alias');
    await assert.rejects(gw.client.send(new CreateAliasCommand({ AliasName: 'alias/with space', TargetKeyId: id })), { name: 'ValidationException' });
    await assert.rejects(gw.client.send(new CreateAliasCommand({ AliasName: 'alias/aws/s3', TargetKeyId: id })), InvalidAliasNameException);
    await assert.rejects(gw.client.send(new CreateAliasCommand({ AliasName: 'alias/x', TargetKeyId: 'alias/dup' })), InvalidArnException);
    await assert.rejects(gw.client.send(new CreateAliasCommand({ AliasName: 'alias/y', TargetKeyId: '00000000-0000-4000-8000-000000000000' })), NotFoundException);
    await gw.client.send(new CreateAliasCommand({ AliasName: 'alias/DUP', TargetKeyId: id })); // case-sensitive
  });

  it('UpdateAlias retargets; the new target must not be pending deletion; DeleteAlias removes it', async () => {
    const [k1, k2, k3] = [await newKey(), await newKey(), await newKey()];
    await gw.client.send(new CreateAliasCommand({ AliasName: 'alias/moving', TargetKeyId: k1 }));
    await gw.client.send(new UpdateAliasCommand({ AliasName: 'alias/moving', TargetKeyId: k2 }));
    assert.equal((await gw.client.send(new DescribeKeyCommand({ KeyId: 'alias/moving' }))).KeyMetadata!.KeyId, k2);
    await gw.client.send(new ScheduleKeyDeletionCommand({ KeyId: k3 }));
    await assert.rejects(gw.client.send(new UpdateAliasCommand({ AliasName: 'alias/moving', TargetKeyId: k3 })), KMSInvalidStateException);
    await assert.rejects(gw.client.send(new CreateAliasCommand({ AliasName: 'alias/doomed', TargetKeyId: k3 })), KMSInvalidStateException);
    await assert.rejects(gw.client.send(new UpdateAliasCommand({ AliasName: 'alias/nothing', TargetKeyId: k2 })), (e: Error) =>
      e instanceof NotFoundException && e.message === 'Alias arn:verenc:111122223333:alias/nothing is not found.');
    await gw.client.send(new DeleteAliasCommand({ AliasName: 'alias/moving' }));
    await assert.rejects(gw.client.send(new DescribeKeyCommand({ KeyId: 'alias/moving' })), NotFoundException);
    await assert.rejects(gw.client.send(new DeleteAliasCommand({ AliasName: 'alias/moving' })), NotFoundException);
  });

  it('ListAliases lists all or one key’s aliases, pages without a trailing NextMarker', async () => {
    const id = await newKey();
    for (const n of ['p1', 'p2', 'p3']) await gw.client.send(new CreateAliasCommand({ AliasName: `alias/list-${n}`, TargetKeyId: id }));
    const ofKey = await gw.client.send(new ListAliasesCommand({ KeyId: id }));
    assert.deepEqual(ofKey.Aliases!.map((a) => a.AliasName), ['alias/list-p1', 'alias/list-p2', 'alias/list-p3']);
    assert.equal(ofKey.Aliases![0].AliasArn, 'arn:verenc:111122223333:alias/list-p1');
    assert.equal(ofKey.Aliases![0].TargetKeyId, id);
    assert.ok(ofKey.Aliases![0].CreationDate instanceof Date && ofKey.Aliases![0].LastUpdatedDate instanceof Date);
    assert.equal(ofKey.Truncated, false);
    const paged: string[] = [];
    for await (const page of paginateListAliases({ client: gw.client, pageSize: 2 }, { KeyId: id })) paged.push(...page.Aliases!.map((a) => a.AliasName!));
    assert.deepEqual(paged, ['alias/list-p1', 'alias/list-p2', 'alias/list-p3']);
    await assert.rejects(gw.client.send(new ListAliasesCommand({ KeyId: '00000000-0000-4000-8000-000000000000' })), NotFoundException);
    await assert.rejects(gw.client.send(new ListAliasesCommand({ KeyId: 'alias/list-p1' })), InvalidArnException);
  });
});

describe('Tags and descriptions', () => {
  let gw: Harness;
  before(async () => {
    gw = await startGateway(integration().hsm);
  });
  after(() => gw.close());

  it('TagResource adds and replaces, UntagResource removes, ListResourceTags pages', async () => {
    const id = (await gw.client.send(new CreateKeyCommand({ Tags: [{ TagKey: 'a', TagValue: '1' }] }))).KeyMetadata!.KeyId!;
    await gw.client.send(new TagResourceCommand({ KeyId: id, Tags: [{ TagKey: 'a', TagValue: '2' }, { TagKey: 'b', TagValue: '' }, { TagKey: 'c', TagValue: '3' }] }));
    const first = await gw.client.send(new ListResourceTagsCommand({ KeyId: id, Limit: 2 }));
    assert.deepEqual(first.Tags, [{ TagKey: 'a', TagValue: '2' }, { TagKey: 'b', TagValue: '' }]);
    assert.equal(first.Truncated, true);
    const second = await gw.client.send(new ListResourceTagsCommand({ KeyId: id, Limit: 2, Marker: first.NextMarker }));
    assert.deepEqual(second.Tags, [{ TagKey: 'c', TagValue: '3' }]);
    assert.deepEqual([second.Truncated, second.NextMarker], [false, undefined]);
    await gw.client.send(new UntagResourceCommand({ KeyId: id, TagKeys: ['a', 'not-there'] }));
    assert.deepEqual((await gw.client.send(new ListResourceTagsCommand({ KeyId: id }))).Tags!.map((t) => t.TagKey), ['b', 'c']);
  });

  it('enforces the tag rules and the 50-tag limit across calls', async () => {
    const id = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    await gw.client.send(new TagResourceCommand({ KeyId: id, Tags: Array.from({ length: 50 }, (_, i) => ({ TagKey: `k${i}`, TagValue: 'v' })) }));
    await assert.rejects(gw.client.send(new TagResourceCommand({ KeyId: id, Tags: [{ TagKey: 'one-more', TagValue: 'v' }] })), (e: Error) => e instanceof TagException && e.message === 'Too many tags');
    await gw.client.send(new TagResourceCommand({ KeyId: id, Tags: [{ TagKey: 'k0', TagValue: 'replaced' }] }));
    await assert.rejects(gw.client.send(new TagResourceCommand({ KeyId: id, Tags: [{ TagKey: 'AWS:x', TagValue: 'v' }] })), TagException);
    await assert.rejects(gw.client.send(new TagResourceCommand({ KeyId: id, Tags: [{ TagKey: 'x'.repeat(129), TagValue: 'v' }] })), (e: Error) =>
      e.name === 'ValidationException' && /at 'tags.1.member.tagKey' failed to satisfy constraint: Member must have length less than or equal to 128/.test(e.message));
  });

  it('UpdateKeyDescription sets, clears, and refuses keys pending deletion', async () => {
    const id = (await gw.client.send(new CreateKeyCommand({ Description: 'old' }))).KeyMetadata!.KeyId!;
    await gw.client.send(new UpdateKeyDescriptionCommand({ KeyId: id, Description: 'new' }));
    assert.equal((await gw.client.send(new DescribeKeyCommand({ KeyId: id }))).KeyMetadata!.Description, 'new');
    await gw.client.send(new UpdateKeyDescriptionCommand({ KeyId: id, Description: '' }));
    assert.equal((await gw.client.send(new DescribeKeyCommand({ KeyId: id }))).KeyMetadata!.Description, '');
    await gw.client.send(new ScheduleKeyDeletionCommand({ KeyId: id }));
    await assert.rejects(gw.client.send(new UpdateKeyDescriptionCommand({ KeyId: id, Description: 'x' })), KMSInvalidStateException);
    await assert.rejects(gw.client.send(new TagResourceCommand({ KeyId: id, Tags: [{ TagKey: 'x', TagValue: 'y' }] })), KMSInvalidStateException);
    assert.ok(await gw.client.send(new ListResourceTagsCommand({ KeyId: id })));
  });
});
