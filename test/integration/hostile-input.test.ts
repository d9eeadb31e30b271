import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  CreateGrantCommand,
  CreateKeyCommand,
  DecryptCommand,
  EncryptCommand,
  GenerateDataKeyCommand,
  InvalidCiphertextException,
  KMSClient,
  ReEncryptCommand,
} from '@aws-sdk/client-kms';
import { integration } from '../support/integration-hooks';
import { registerSecret } from '../support/secrets';
import { rawCall, startGateway, type Harness } from '../support/harness';

const ROOT = 'arn:aws:iam::111122223333:root';
const BOB = 'arn:aws:iam::111122223333:user/bob';
const DENIED = { name: 'AccessDeniedException' };

/** Maps from JSON text: a JS object literal cannot hold a `__proto__` key. */
const map = (json: string) => JSON.parse(json) as Record<string, string>;

/**
 * Input built to reach the core: odd maps and a `__proto__` key.
 */
describe('Hostile input', function () {
  this.timeout(60000);
  let gw: Harness;
  let dir: string;
  const bob = { accessKeyId: 'AKIAQKMSBOB00000009', secretAccessKey: 'bob-secret-0123456789abcdef' };
  registerSecret(bob.secretAccessKey);
  const asBob = () => new KMSClient({ endpoint: gw.url, region: 'us-east-1', credentials: { ...bob }, maxAttempts: 1 });
  const newKey = async (Policy?: string) => (await gw.client.send(new CreateKeyCommand({ Policy }))).KeyMetadata!.KeyId!;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-hostile-'));
    const file = path.join(dir, 'credentials.json');
    fs.writeFileSync(file, JSON.stringify({ principals: [{ ...bob, principalArn: BOB }] }));
    gw = await startGateway(integration().hsm, { QKMS_CREDENTIALS_FILE: file });
  });
  after(async () => {
    await gw.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a map member holding a non-string value is SerializationException, an empty key ValidationException; never a 5xx', async () => {
    const keyId = await newKey();
    const blob = Buffer.from((await gw.client.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('x') }))).CiphertextBlob!).toString('base64');
    const bodies: Array<[string, (m: string) => string]> = [
      ['Encrypt', (m) => `{"KeyId":"${keyId}","Plaintext":"eA==","EncryptionContext":${m}}`],
      ['Decrypt', (m) => `{"CiphertextBlob":"${blob}","EncryptionContext":${m}}`],
      ['GenerateDataKey', (m) => `{"KeyId":"${keyId}","KeySpec":"AES_256","EncryptionContext":${m}}`],
      ['ReEncrypt', (m) => `{"CiphertextBlob":"${blob}","DestinationKeyId":"${keyId}","DestinationEncryptionContext":${m}}`],
      ['CreateGrant', (m) => `{"KeyId":"${keyId}","GranteePrincipal":"${BOB}","Operations":["Decrypt"],"Constraints":{"EncryptionContextSubset":${m}}}`],
    ];
    const expected: Array<[string, string]> = [
      ['{"":5}', 'SerializationException'], ['{"a":5}', 'SerializationException'], ['{"__proto__":5}', 'SerializationException'],
      ['{"":null}', 'SerializationException'], ['{"a":{"b":"c"}}', 'SerializationException'], ['[]', 'SerializationException'],
      ['{"":"x"}', 'ValidationException'], ['{"a":""}', 'ValidationException'],
    ];
    for (const [op, body] of bodies) {
      for (const [m, type] of expected) {
        const res = await rawCall(gw.url, `TrentService.${op}`, body(m));
        assert.deepEqual([res.status, res.json!.__type], [400, type], `${op} ${m}: ${res.text}`);
      }
    }
  });

  it('a context key named __proto__ is bound like any other: the blob needs exactly that context', async () => {
    const keyId = await newKey();
    const tenantA = map('{"__proto__":"tenant-a"}');
    const { CiphertextBlob } = await gw.client.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('for tenant a'), EncryptionContext: tenantA }));
    for (const wrong of [undefined, map('{"__proto__":"tenant-b"}'), {}, { other: 'tenant-a' }]) {
      await assert.rejects(gw.client.send(new DecryptCommand({ CiphertextBlob, EncryptionContext: wrong })), InvalidCiphertextException, JSON.stringify(wrong));
    }
    const back = await gw.client.send(new DecryptCommand({ CiphertextBlob, EncryptionContext: tenantA }));
    assert.equal(Buffer.from(back.Plaintext!).toString(), 'for tenant a');
    // The same through GenerateDataKey and ReEncrypt's two contexts.
    const dk = await gw.client.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256', EncryptionContext: map('{"__proto__":"x","b":"y"}') }));
    await assert.rejects(gw.client.send(new DecryptCommand({ CiphertextBlob: dk.CiphertextBlob, EncryptionContext: { b: 'y' } })), InvalidCiphertextException);
    const moved = await gw.client.send(new ReEncryptCommand({ CiphertextBlob, SourceEncryptionContext: tenantA, DestinationKeyId: keyId, DestinationEncryptionContext: map('{"__proto__":"moved"}') }));
    await assert.rejects(gw.client.send(new DecryptCommand({ CiphertextBlob: moved.CiphertextBlob })), InvalidCiphertextException);
    assert.ok((await gw.client.send(new DecryptCommand({ CiphertextBlob: moved.CiphertextBlob, EncryptionContext: map('{"__proto__":"moved"}') }))).Plaintext);
  });

  it('a grant constrained to {"__proto__":"x"} keeps that constraint: stored, listed, and enforced for the grantee', async () => {
    const keyId = await newKey();
    const created = await rawCall(gw.url, 'TrentService.CreateGrant', JSON.stringify({ KeyId: keyId, GranteePrincipal: BOB, Operations: ['Decrypt'] }).replace(/}$/, ',"Constraints":{"EncryptionContextSubset":{"__proto__":"x"}}}'));
    assert.equal(created.status, 200, created.text);
    const listed = await rawCall(gw.url, 'TrentService.ListGrants', JSON.stringify({ KeyId: keyId }));
    assert.match(listed.text, /"Constraints":\{"EncryptionContextSubset":\{"__proto__":"x"\}\}/);
    const plain = await gw.client.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('no context') }));
    const other = await gw.client.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('other'), EncryptionContext: { tenant: 'x' } }));
    const bound = await gw.client.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('bound'), EncryptionContext: map('{"__proto__":"x","more":"y"}') }));
    await assert.rejects(asBob().send(new DecryptCommand({ CiphertextBlob: plain.CiphertextBlob })), DENIED);
    await assert.rejects(asBob().send(new DecryptCommand({ CiphertextBlob: other.CiphertextBlob, EncryptionContext: { tenant: 'x' } })), DENIED);
    const back = await asBob().send(new DecryptCommand({ CiphertextBlob: bound.CiphertextBlob, EncryptionContext: map('{"__proto__":"x","more":"y"}') }));
    assert.equal(Buffer.from(back.Plaintext!).toString(), 'bound');
  });

  it('grant constraints hold at most 8 pairs of values up to 384 characters (ValidationException)', async () => {
    const keyId = await newKey();
    const nine = Object.fromEntries(Array.from({ length: 9 }, (_, i) => [`k${i}`, 'v']));
    for (const EncryptionContextSubset of [nine, { k: 'v'.repeat(385) }]) {
      await assert.rejects(gw.client.send(new CreateGrantCommand({ KeyId: keyId, GranteePrincipal: BOB, Operations: ['Decrypt'], Constraints: { EncryptionContextSubset } })), { name: 'ValidationException' });
    }
    assert.ok(await gw.client.send(new CreateGrantCommand({ KeyId: keyId, GranteePrincipal: BOB, Operations: ['Decrypt'], Constraints: { EncryptionContextSubset: { k: 'v'.repeat(384) } } })));
  });
});
