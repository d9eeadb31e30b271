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
import { startChildGateway } from '../support/child-gateway';
import { integration } from '../support/integration-hooks';
import { registerSecret } from '../support/secrets';
import { rawCall, startGateway, type Harness } from '../support/harness';

const ROOT = 'arn:aws:iam::111122223333:root';
const BOB = 'arn:aws:iam::111122223333:user/bob';
const DENIED = { name: 'AccessDeniedException' };

/** Maps from JSON text: a JS object literal cannot hold a `__proto__` key. */
const map = (json: string) => JSON.parse(json) as Record<string, string>;

/**
 * Input built to reach the core: odd maps, a `__proto__` key, context keys that differ only in
 * case, and a context that made the old wildcard matcher backtrack for minutes.
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

  it('context keys that differ only in case cannot slip past a key-policy Deny on kms:EncryptionContext:<key>', async () => {
    const keyId = await newKey(JSON.stringify({ Statement: [
      { Effect: 'Allow', Principal: { AWS: ROOT }, Action: 'kms:*', Resource: '*' },
      { Effect: 'Allow', Principal: { AWS: BOB }, Action: ['kms:GenerateDataKey', 'kms:Encrypt'], Resource: '*' },
      { Effect: 'Deny', Principal: { AWS: BOB }, Action: 'kms:*', Resource: '*', Condition: { StringEquals: { 'kms:EncryptionContext:classification': 'secret' } } },
    ] }));
    const gdk = (EncryptionContext: Record<string, string>) => asBob().send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256', EncryptionContext }));
    assert.ok((await gdk({ classification: 'public' })).Plaintext);
    await assert.rejects(gdk({ classification: 'secret' }), DENIED);
    await assert.rejects(gdk({ Classification: 'secret' }), DENIED, 'the condition key name is case-insensitive');
    await assert.rejects(gdk({ classification: 'secret', Classification: 'public' }), DENIED);
    await assert.rejects(gdk({ Classification: 'public', classification: 'secret' }), DENIED);
    await assert.rejects(gdk({ CLASSIFICATION: 'public', classification: 'public', ClassiFication: 'secret' }), DENIED);
    await assert.rejects(asBob().send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('x'), EncryptionContext: { classification: 'secret', Classification: 'public' } })), DENIED);
  });

  it('grant constraints match context keys case-insensitively (as AWS documents), and every spelling must carry the value', async () => {
    const keyId = await newKey();
    await gw.client.send(new CreateGrantCommand({ KeyId: keyId, GranteePrincipal: BOB, Operations: ['GenerateDataKey'], Constraints: { EncryptionContextSubset: { Tenant: 'a' } } }));
    const gdk = (EncryptionContext: Record<string, string>) => asBob().send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256', EncryptionContext }));
    assert.ok((await gdk({ tenant: 'a' })).Plaintext);
    await assert.rejects(gdk({ tenant: 'A' }), DENIED, 'values are case-sensitive');
    await assert.rejects(gdk({ tenant: 'a', TENANT: 'b' }), DENIED);
    const equals = await newKey();
    await gw.client.send(new CreateGrantCommand({ KeyId: equals, GranteePrincipal: BOB, Operations: ['GenerateDataKey'], Constraints: { EncryptionContextEquals: { Tenant: 'a' } } }));
    assert.ok((await asBob().send(new GenerateDataKeyCommand({ KeyId: equals, KeySpec: 'AES_256', EncryptionContext: { TENANT: 'a' } }))).Plaintext);
    await assert.rejects(asBob().send(new GenerateDataKeyCommand({ KeyId: equals, KeySpec: 'AES_256', EncryptionContext: { tenant: 'a', other: 'b' } })), DENIED);
  });

  it('grant constraints hold at most 8 pairs of values up to 384 characters (ValidationException)', async () => {
    const keyId = await newKey();
    const nine = Object.fromEntries(Array.from({ length: 9 }, (_, i) => [`k${i}`, 'v']));
    for (const EncryptionContextSubset of [nine, { k: 'v'.repeat(385) }]) {
      await assert.rejects(gw.client.send(new CreateGrantCommand({ KeyId: keyId, GranteePrincipal: BOB, Operations: ['Decrypt'], Constraints: { EncryptionContextSubset } })), { name: 'ValidationException' });
    }
    assert.ok(await gw.client.send(new CreateGrantCommand({ KeyId: keyId, GranteePrincipal: BOB, Operations: ['Decrypt'], Constraints: { EncryptionContextSubset: { k: 'v'.repeat(384) } } })));
  });

  it('a wildcard condition against an 8 KiB context answers at once, and /health answers meanwhile (gateway process)', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-wildcard-'));
    const child = await startChildGateway({ QKMS_DATA_DIR: dataDir });
    let isAnswering = true;
    try {
      const { KeyMetadata } = await child.client.send(new CreateKeyCommand({ Policy: JSON.stringify({ Statement: [
        { Effect: 'Allow', Principal: { AWS: ROOT }, Action: 'kms:*', Resource: '*' },
        { Effect: 'Deny', Principal: '*', Action: 'kms:GenerateDataKey', Resource: '*', Condition: { StringLike: { 'kms:EncryptionContext:tenant': '*-*-*-*-*-prod' } } },
      ] }) }));
      const gdk = (tenant: string) => child.client.send(new GenerateDataKeyCommand({ KeyId: KeyMetadata!.KeyId, KeySpec: 'AES_256', EncryptionContext: { tenant } }));
      const started = Date.now();
      const requests = Promise.allSettled([gdk('-'.repeat(8000)), gdk('-'.repeat(8000)), gdk(`${'-'.repeat(7995)}-prod`)]);
      let done = false;
      void requests.then(() => (done = true));
      const healthMs: number[] = [];
      do {
        const t = Date.now();
        const res = await fetch(`${child.url}/health`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined);
        if (!res) {
          isAnswering = false;
          assert.fail('/health did not answer within 2 s while the requests ran');
        }
        assert.equal(res.status, 200);
        healthMs.push(Date.now() - t);
        await new Promise((r) => setTimeout(r, 20));
      } while (!done && Date.now() - started < 10000);
      const [a, b, prod] = await requests;
      const elapsed = Date.now() - started;
      assert.ok(elapsed < 5000, `the three requests took ${elapsed} ms`);
      assert.equal(a.status, 'fulfilled');
      assert.equal(b.status, 'fulfilled');
      assert.ok(prod.status === 'rejected' && (prod.reason as Error).name === 'AccessDeniedException', 'a value that matches is denied');
      assert.ok(Math.max(...healthMs) < 1000, `/health took up to ${Math.max(...healthMs)} ms`);
    } finally {
      await child.stop(isAnswering ? 'SIGTERM' : 'SIGKILL');
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
