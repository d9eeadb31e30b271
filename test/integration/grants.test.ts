import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  CreateGrantCommand,
  CreateKeyCommand,
  DecryptCommand,
  DisabledException,
  DisableKeyCommand,
  EncryptCommand,
  GenerateDataKeyCommand,
  InvalidGrantIdException,
  InvalidGrantTokenException,
  KMSClient,
  ListGrantsCommand,
  ListRetirableGrantsCommand,
  PutKeyPolicyCommand,
  RetireGrantCommand,
  RevokeGrantCommand,
  ScheduleKeyDeletionCommand,
} from '@aws-sdk/client-kms';
import { integration } from '../support/integration-hooks';
import { registerSecret } from '../support/secrets';
import { startGateway, type Harness } from '../support/harness';

const ROOT = 'arn:aws:iam::111122223333:root';
const ALICE = 'arn:aws:iam::111122223333:user/alice';
const BOB = 'arn:aws:iam::111122223333:user/bob';
const DENIED = { name: 'AccessDeniedException' };

describe('Grants', () => {
  let gw: Harness;
  let dir: string;
  const creds = {
    alice: { accessKeyId: 'AKIAQKMSALICE000003', secretAccessKey: 'alice-secret-0123456789abcdef' },
    bob: { accessKeyId: 'AKIAQKMSBOB00000003', secretAccessKey: 'bob-secret-0123456789abcdef' },
  };
  for (const c of Object.values(creds)) registerSecret(c.secretAccessKey);
  const as = (who: keyof typeof creds) => new KMSClient({ endpoint: gw.url, region: 'us-east-1', credentials: { ...creds[who] }, maxAttempts: 1 });
  const newKey = async () => (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
  const grant = (KeyId: string, Operations: string[], extra: Record<string, unknown> = {}) =>
    gw.client.send(new CreateGrantCommand({ KeyId, GranteePrincipal: BOB, Operations: Operations as never, ...extra }));
  const bobGdk = (KeyId: string, EncryptionContext?: Record<string, string>, GrantTokens?: string[]) =>
    as('bob').send(new GenerateDataKeyCommand({ KeyId, KeySpec: 'AES_256', EncryptionContext, GrantTokens }));

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-grants-'));
    const file = path.join(dir, 'credentials.json');
    fs.writeFileSync(file, JSON.stringify({ principals: [
      { ...creds.alice, principalArn: ALICE, policy: { Statement: [{ Effect: 'Allow', Action: 'kms:*', Resource: '*' }] } },
      { ...creds.bob, principalArn: BOB },
    ] }));
    gw = await startGateway(integration().hsm, { QKMS_CREDENTIALS_FILE: file });
  });
  after(async () => {
    await gw.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a principal denied by policy is allowed by a grant at once, for exactly its operations', async () => {
    const id = await newKey();
    await assert.rejects(bobGdk(id), DENIED);
    const { GrantId, GrantToken } = await grant(id, ['GenerateDataKey', 'Decrypt']);
    assert.match(GrantId!, /^[0-9a-f]{64}$/);
    const dk = await bobGdk(id, undefined, [GrantToken!]);
    assert.ok((await as('bob').send(new DecryptCommand({ CiphertextBlob: dk.CiphertextBlob }))).Plaintext);
    assert.ok(await bobGdk(id), 'grants work without the token too: no eventual consistency here');
    await assert.rejects(as('bob').send(new EncryptCommand({ KeyId: id, Plaintext: Buffer.from('x') })), DENIED);
  });

  it('encryption-context constraints: Subset and Equals', async () => {
    const id = await newKey();
    await grant(id, ['GenerateDataKey'], { Constraints: { EncryptionContextSubset: { tenant: 'acme' } } });
    assert.ok(await bobGdk(id, { tenant: 'acme', purpose: 'x' }));
    await assert.rejects(bobGdk(id, { tenant: 'other' }), DENIED);
    await assert.rejects(bobGdk(id), DENIED);
    const eq = await newKey();
    await grant(eq, ['GenerateDataKey'], { Constraints: { EncryptionContextEquals: { tenant: 'acme' } } });
    assert.ok(await bobGdk(eq, { tenant: 'acme' }));
    await assert.rejects(bobGdk(eq, { tenant: 'acme', purpose: 'x' }), DENIED);
  });

  it('the same Name and parameters give the same GrantId with a new token; both tokens are valid', async () => {
    const id = await newKey();
    const a = await grant(id, ['Decrypt', 'GenerateDataKey'], { Name: 'app-1' });
    const b = await grant(id, ['GenerateDataKey', 'Decrypt'], { Name: 'app-1' });
    assert.equal(a.GrantId, b.GrantId);
    assert.notEqual(a.GrantToken, b.GrantToken);
    assert.ok(await bobGdk(id, undefined, [a.GrantToken!, b.GrantToken!]));
    const c = await grant(id, ['Decrypt'], { Name: 'app-1' });
    assert.notEqual(c.GrantId, a.GrantId);
  });

  it('ListGrants lists and filters a key’s grants with their fields; ListRetirableGrants by retiring principal', async () => {
    const id = await newKey();
    const { GrantId } = await grant(id, ['Decrypt'], { Name: 'listed', RetiringPrincipal: ALICE, Constraints: { EncryptionContextSubset: { a: 'b' } } });
    await gw.client.send(new CreateGrantCommand({ KeyId: id, GranteePrincipal: ALICE, Operations: ['Encrypt'] }));
    const all = await gw.client.send(new ListGrantsCommand({ KeyId: id }));
    assert.equal(all.Grants!.length, 2);
    const g = (await gw.client.send(new ListGrantsCommand({ KeyId: id, GranteePrincipal: BOB }))).Grants!;
    assert.equal(g.length, 1);
    assert.deepEqual(
      { ...g[0], CreationDate: undefined },
      { KeyId: `arn:verenc:111122223333:key/${id}`, GrantId, Name: 'listed', CreationDate: undefined, GranteePrincipal: BOB, RetiringPrincipal: ALICE,
        IssuingAccount: ROOT, Operations: ['Decrypt'], Constraints: { EncryptionContextSubset: { a: 'b' } } },
    );
    const page = await gw.client.send(new ListGrantsCommand({ KeyId: id, Limit: 1 }));
    assert.deepEqual([page.Grants!.length, page.Truncated], [1, true]);
    const retirable = await as('alice').send(new ListRetirableGrantsCommand({ RetiringPrincipal: ALICE }));
    assert.ok(retirable.Grants!.some((x) => x.GrantId === GrantId));
  });

  it('RetireGrant by token or by key and id, only by whom the grant allows; afterwards the grant and its tokens are gone', async () => {
    const id = await newKey();
    const { GrantId, GrantToken } = await grant(id, ['GenerateDataKey'], { RetiringPrincipal: ALICE });
    await assert.rejects(as('bob').send(new RetireGrantCommand({ GrantToken })), DENIED);
    await as('alice').send(new RetireGrantCommand({ GrantToken }));
    await assert.rejects(bobGdk(id), DENIED);
    await assert.rejects(bobGdk(id, undefined, [GrantToken!]), InvalidGrantTokenException);
    await assert.rejects(as('alice').send(new RetireGrantCommand({ KeyId: id, GrantId })), InvalidGrantIdException);
    const self = await grant(id, ['GenerateDataKey', 'RetireGrant']);
    await as('bob').send(new RetireGrantCommand({ KeyId: id, GrantId: self.GrantId }));
    await assert.rejects(as('bob').send(new RetireGrantCommand({})), { name: 'ValidationException' });
  });

  it('RevokeGrant by the key’s administrators; unknown ids are InvalidGrantIdException', async () => {
    const id = await newKey();
    const { GrantId } = await grant(id, ['GenerateDataKey']);
    await assert.rejects(as('bob').send(new RevokeGrantCommand({ KeyId: id, GrantId })), DENIED);
    await gw.client.send(new RevokeGrantCommand({ KeyId: id, GrantId }));
    await assert.rejects(bobGdk(id), DENIED);
    await assert.rejects(gw.client.send(new RevokeGrantCommand({ KeyId: id, GrantId })), InvalidGrantIdException);
  });

  it('refuses operations the key cannot do, constraints on operations without a context, and disabled keys', async () => {
    const id = await newKey();
    await assert.rejects(grant(id, ['Sign']), { name: 'ValidationException' });
    await assert.rejects(grant(id, ['DescribeKey'], { Constraints: { EncryptionContextSubset: { a: 'b' } } }), { name: 'ValidationException' });
    await gw.client.send(new DisableKeyCommand({ KeyId: id }));
    await assert.rejects(grant(id, ['Decrypt']), DisabledException);
  });

  it('an explicit Deny in the key policy beats a grant; kms:GrantOperations limits what may be granted', async () => {
    const id = await newKey();
    await grant(id, ['GenerateDataKey']);
    await gw.client.send(new PutKeyPolicyCommand({ KeyId: id, Policy: JSON.stringify({ Statement: [
      { Effect: 'Allow', Principal: { AWS: ROOT }, Action: 'kms:*', Resource: '*' },
      { Effect: 'Deny', Principal: { AWS: BOB }, Action: 'kms:GenerateDataKey', Resource: '*' },
      { Effect: 'Allow', Principal: { AWS: BOB }, Action: 'kms:CreateGrant', Resource: '*', Condition: { 'ForAllValues:StringEquals': { 'kms:GrantOperations': ['Decrypt'] } } },
    ] }) }));
    await assert.rejects(bobGdk(id), (e: Error) => e.name === 'AccessDeniedException' && e.message.includes('explicit deny'));
    assert.ok(await as('bob').send(new CreateGrantCommand({ KeyId: id, GranteePrincipal: ALICE, Operations: ['Decrypt'] })));
    await assert.rejects(as('bob').send(new CreateGrantCommand({ KeyId: id, GranteePrincipal: ALICE, Operations: ['Decrypt', 'Encrypt'] })), DENIED);
  });

  it('deleting a key deletes its grants', async () => {
    const id = await newKey();
    const { GrantToken } = await grant(id, ['Decrypt'], { RetiringPrincipal: ALICE });
    await gw.client.send(new ScheduleKeyDeletionCommand({ KeyId: id, PendingWindowInDays: 7 }));
    gw.clock.now = new Date(Date.now() + 8 * 86_400_000);
    assert.deepEqual((await gw.tick()).deleted, [id]);
    gw.clock.now = new Date();
    assert.deepEqual(await gw.deps.keys.listGrants({ keyId: id }, 0, 10), []);
    await assert.rejects(as('alice').send(new RetireGrantCommand({ GrantToken })), InvalidGrantTokenException);
  });
});
