import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  CreateAliasCommand,
  CreateKeyCommand,
  DecryptCommand,
  DescribeKeyCommand,
  EncryptCommand,
  GenerateDataKeyCommand,
  GetKeyPolicyCommand,
  KMSClient,
  ListKeyPoliciesCommand,
  MalformedPolicyDocumentException,
  NotFoundException,
  PutKeyPolicyCommand,
  ScheduleKeyDeletionCommand,
  UpdateAliasCommand,
  DryRunOperationException,
} from '@aws-sdk/client-kms';
import { integration } from '../support/integration-hooks';
import { registerSecret } from '../support/secrets';
import { startGateway, type Harness } from '../support/harness';

const ROOT = 'arn:aws:iam::111122223333:root';
const ALICE = 'arn:aws:iam::111122223333:user/alice';
const BOB = 'arn:aws:iam::111122223333:user/bob';
const admin = (extra: object[] = []) =>
  JSON.stringify({ Version: '2012-10-17', Statement: [{ Sid: 'admin', Effect: 'Allow', Principal: { AWS: ROOT }, Action: 'kms:*', Resource: '*' }, ...extra] });

// AccessDeniedException is not in the KMS model: the SDK raises KMSServiceException named after it.
/** kms-protocol.md §10 "Key policy" and AWS's evaluation: explicit Deny, key policy, IAM delegation. */
describe('Key policies', () => {
  let gw: Harness;
  let dir: string;
  const creds = {
    alice: { accessKeyId: 'AKIAQKMSALICE000002', secretAccessKey: 'alice-secret-0123456789abcdef' },
    bob: { accessKeyId: 'AKIAQKMSBOB00000002', secretAccessKey: 'bob-secret-0123456789abcdef' },
  };
  for (const c of Object.values(creds)) registerSecret(c.secretAccessKey);
  const as = (who: keyof typeof creds) => new KMSClient({ endpoint: gw.url, region: 'us-east-1', credentials: { ...creds[who] }, maxAttempts: 1 });
  const newKey = async (Policy?: string) => (await gw.client.send(new CreateKeyCommand({ Policy }))).KeyMetadata!.KeyId!;
  const gdk = (who: keyof typeof creds, KeyId: string, EncryptionContext?: Record<string, string>) =>
    as(who).send(new GenerateDataKeyCommand({ KeyId, KeySpec: 'AES_256', EncryptionContext }));

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-policy-'));
    const file = path.join(dir, 'credentials.json');
    fs.writeFileSync(file, JSON.stringify({
      principals: [
        // alice: IAM allows everything except scheduling deletion.
        { ...creds.alice, principalArn: ALICE, policy: { Version: '2012-10-17', Statement: [
          { Effect: 'Allow', Action: 'kms:*', Resource: '*' },
          { Effect: 'Deny', Action: 'kms:ScheduleKeyDeletion', Resource: '*' },
        ] } },
        // bob: no identity policy; only key policies that name him let him in.
        { ...creds.bob, principalArn: BOB },
      ],
    }));
    gw = await startGateway(integration().hsm, { QKMS_CREDENTIALS_FILE: file });
  });
  after(async () => {
    await gw.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a key without a Policy gets the AWS default policy; ListKeyPolicies names only "default"', async () => {
    const id = await newKey();
    const { Policy, PolicyName } = await gw.client.send(new GetKeyPolicyCommand({ KeyId: id }));
    assert.equal(PolicyName, 'default');
    assert.deepEqual(JSON.parse(Policy!), {
      Version: '2012-10-17', Id: 'key-default-1',
      Statement: [{ Sid: 'Enable IAM User Permissions', Effect: 'Allow', Principal: { AWS: ROOT }, Action: 'kms:*', Resource: '*' }],
    });
    assert.deepEqual((await gw.client.send(new ListKeyPoliciesCommand({ KeyId: id }))).PolicyNames, ['default']);
    await assert.rejects(gw.client.send(new GetKeyPolicyCommand({ KeyId: id, PolicyName: 'other' })), NotFoundException);
  });

  it('the default policy delegates to IAM: alice (identity policy) may, bob (none) may not, in AWS wording', async () => {
    const id = await newKey();
    assert.ok((await gdk('alice', id)).Plaintext);
    await assert.rejects(gdk('bob', id), (e: Error) =>
      e.name === 'AccessDeniedException' &&
      e.message === `User: ${BOB} is not authorized to perform: kms:GenerateDataKey on resource: arn:verenc:111122223333:key/${id} because no identity-based policy allows the kms:GenerateDataKey action`);
    await assert.rejects(as('bob').send(new CreateKeyCommand({})), { name: 'AccessDeniedException' });
  });

  it('UpdateAlias needs kms:UpdateAlias on the current target as well as the new one', async () => {
    const admins = await newKey();
    await gw.client.send(new CreateAliasCommand({ AliasName: 'alias/payments', TargetKeyId: admins }));
    const bobs = await newKey(admin([{ Effect: 'Allow', Principal: { AWS: BOB }, Action: ['kms:UpdateAlias', 'kms:CreateAlias'], Resource: '*' }]));
    await assert.rejects(as('bob').send(new UpdateAliasCommand({ AliasName: 'alias/payments', TargetKeyId: bobs })), (e: Error) => e.name === 'AccessDeniedException');
    await as('bob').send(new CreateAliasCommand({ AliasName: 'alias/bobs', TargetKeyId: bobs }));
    const other = await newKey(admin([{ Effect: 'Allow', Principal: { AWS: BOB }, Action: 'kms:UpdateAlias', Resource: '*' }]));
    await as('bob').send(new UpdateAliasCommand({ AliasName: 'alias/bobs', TargetKeyId: other }));
  });

  it('an explicit Deny wins over every Allow', async () => {
    const id = await newKey();
    await assert.rejects(as('alice').send(new ScheduleKeyDeletionCommand({ KeyId: id })), (e: Error) =>
      e.name === 'AccessDeniedException' && e.message.endsWith('with an explicit deny in an identity-based policy'));
    await gw.client.send(new PutKeyPolicyCommand({ KeyId: id, Policy: admin([
      { Effect: 'Allow', Principal: { AWS: ALICE }, Action: 'kms:*', Resource: '*' },
      { Effect: 'Deny', Principal: { AWS: ALICE }, Action: ['kms:Decrypt'], Resource: '*' },
    ]) }));
    const { CiphertextBlob } = await as('alice').send(new EncryptCommand({ KeyId: id, Plaintext: Buffer.from('x') }));
    await assert.rejects(as('alice').send(new DecryptCommand({ CiphertextBlob })), (e: Error) =>
      e.name === 'AccessDeniedException' && e.message.endsWith('with an explicit deny in a resource-based policy'));
  });

  it('a key policy naming bob lets him do exactly the actions it lists', async () => {
    const id = await newKey(admin([{ Effect: 'Allow', Principal: { AWS: BOB }, Action: ['kms:Encrypt', 'kms:Decrypt', 'kms:Describe*'], Resource: '*' }]));
    const { CiphertextBlob } = await as('bob').send(new EncryptCommand({ KeyId: id, Plaintext: Buffer.from('for bob') }));
    assert.equal(Buffer.from((await as('bob').send(new DecryptCommand({ CiphertextBlob }))).Plaintext!).toString(), 'for bob');
    assert.ok(await as('bob').send(new DescribeKeyCommand({ KeyId: id })));
    // The admin statement delegates to the account, so what bob lacks for other actions is IAM.
    await assert.rejects(gdk('bob', id), (e: Error) => e.name === 'AccessDeniedException' && e.message.endsWith('because no identity-based policy allows the kms:GenerateDataKey action'));
    const onlyBob = (await gw.client.send(new CreateKeyCommand({ Policy: admin().replace(ROOT, BOB), BypassPolicyLockoutSafetyCheck: true }))).KeyMetadata!.KeyId!;
    await assert.rejects(as('alice').send(new DescribeKeyCommand({ KeyId: onlyBob })), (e: Error) =>
      e.name === 'AccessDeniedException' && e.message.endsWith('because no resource-based policy allows the kms:DescribeKey action'));
  });

  it('evaluates encryption-context, caller-account and principal conditions', async () => {
    const id = await newKey(admin([
      { Effect: 'Allow', Principal: { AWS: '*' }, Action: 'kms:GenerateDataKey', Resource: '*', Condition: {
        StringEquals: { 'kms:EncryptionContext:tenant': 'acme', 'kms:CallerAccount': '111122223333' },
        'ForAllValues:StringEquals': { 'kms:EncryptionContextKeys': ['tenant', 'purpose'] },
        StringLike: { 'aws:PrincipalArn': 'arn:aws:iam::111122223333:user/b*' },
      } },
    ]));
    assert.ok((await gdk('bob', id, { tenant: 'acme' })).Plaintext);
    assert.ok((await gdk('bob', id, { tenant: 'acme', purpose: 'x' })).Plaintext);
    await assert.rejects(gdk('bob', id, { tenant: 'other' }), { name: 'AccessDeniedException' });
    await assert.rejects(gdk('bob', id), { name: 'AccessDeniedException' });
    await assert.rejects(gdk('bob', id, { tenant: 'acme', extra: 'y' }), { name: 'AccessDeniedException' });
    const ifExists = await newKey(admin([
      { Effect: 'Allow', Principal: { AWS: BOB }, Action: 'kms:GenerateDataKey', Resource: '*', Condition: { StringEqualsIfExists: { 'kms:EncryptionContext:tenant': 'acme' } } },
    ]));
    assert.ok(await gdk('bob', ifExists));
    await assert.rejects(gdk('bob', ifExists, { tenant: 'evil' }), { name: 'AccessDeniedException' });
  });

  it('DryRun answers from the evaluation: denied stays AccessDenied, allowed is DryRunOperationException', async () => {
    const id = await newKey();
    await assert.rejects(as('bob').send(new GenerateDataKeyCommand({ KeyId: id, KeySpec: 'AES_256', DryRun: true })), { name: 'AccessDeniedException' });
    await assert.rejects(as('alice').send(new GenerateDataKeyCommand({ KeyId: id, KeySpec: 'AES_256', DryRun: true })), DryRunOperationException);
  });

  it('MalformedPolicyDocumentException for bad documents, and the lockout safety check', async () => {
    const id = await newKey();
    for (const Policy of ['not json', '{}', '{"Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}',
      admin([{ Effect: 'Maybe', Principal: { AWS: BOB }, Action: 'kms:*' }]),
      admin([{ Effect: 'Allow', Principal: { AWS: BOB }, Action: 'kms:*', Condition: { NumericWhatever: { a: '1' } } }])]) {
      await assert.rejects(gw.client.send(new PutKeyPolicyCommand({ KeyId: id, Policy })), MalformedPolicyDocumentException, Policy);
      await assert.rejects(gw.client.send(new CreateKeyCommand({ Policy })), MalformedPolicyDocumentException, Policy);
    }
    const bobOnly = JSON.stringify({ Statement: [{ Effect: 'Allow', Principal: { AWS: BOB }, Action: 'kms:Encrypt', Resource: '*' }] });
    await assert.rejects(gw.client.send(new PutKeyPolicyCommand({ KeyId: id, Policy: bobOnly })), (e: Error) =>
      e instanceof MalformedPolicyDocumentException && e.message === 'The new key policy will not allow you to update the key policy in the future.');
    await gw.client.send(new PutKeyPolicyCommand({ KeyId: id, Policy: bobOnly, BypassPolicyLockoutSafetyCheck: true }));
    await assert.rejects(gw.client.send(new GetKeyPolicyCommand({ KeyId: id })), { name: 'AccessDeniedException' }, 'the admin locked itself out, as in AWS');
    assert.ok(await as('bob').send(new EncryptCommand({ KeyId: id, Plaintext: Buffer.from('x') })));
  });
});
