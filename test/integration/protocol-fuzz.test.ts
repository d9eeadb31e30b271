import assert from 'node:assert/strict';
import fc from 'fast-check';
import { CreateKeyCommand, EncryptCommand, GenerateDataKeyCommand } from '@aws-sdk/client-kms';
import { registry } from '../../src/operations/registry';
import { integration } from '../support/integration-hooks';
import { rawCall, startGateway, type Harness } from '../support/harness';

/**
 * Bad input at volume (issue #5 item 5): random and mutated bodies for every operation, signed so
 * they reach the protocol layer. Every answer must be a KMS error in the 4xx range (or a 200 where
 * the random input happens to be valid), never a 5xx, and the gateway must keep serving.
 */
describe('Protocol fuzzing', function () {
  this.timeout(120000);
  let gw: Harness;
  let keyId: string;
  let blob: string;
  before(async () => {
    gw = await startGateway(integration().hsm);
    keyId = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    blob = Buffer.from((await gw.client.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('fuzz') }))).CiphertextBlob!).toString('base64');
  });
  after(() => gw.close());

  const operations = [...registry.keys()].filter((op) => !['ScheduleKeyDeletion', 'DisableKey', 'PutKeyPolicy'].includes(op));
  const bodies = () => {
    const member = fc.constantFrom('KeyId', 'Plaintext', 'CiphertextBlob', 'EncryptionContext', 'KeySpec', 'NumberOfBytes', 'GrantTokens', 'Limit', 'Marker',
      'AliasName', 'TargetKeyId', 'Tags', 'Policy', 'GrantId', 'GrantToken', 'Operations', 'DestinationKeyId', 'PendingWindowInDays', 'Description');
    const value = fc.oneof(
      fc.anything({ maxDepth: 2 }),
      fc.constantFrom(keyId, `arn:verenc:111122223333:key/${keyId}`, 'alias/x', blob, 'AES_256', '', 'A'.repeat(5000), '\u0000', '\ud800'),
      fc.integer(), fc.double(), fc.base64String({ maxLength: 200 }),
    );
    return fc.oneof(
      fc.dictionary(member, value, { maxKeys: 6 }).map((o) => JSON.stringify(o)),
      fc.string({ maxLength: 300 }),
      fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b).toString('latin1')),
      fc.json({ maxDepth: 3 }),
    );
  };

  it('answers every random or mutated request with a 2xx or a 4xx KMS error', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...operations), bodies(), async (op, b) => {
        const res = await rawCall(gw.url, `TrentService.${op}`, b);
        assert.ok(res.status < 500, `${op} ${b.slice(0, 80)} -> ${res.status} ${res.text}`);
        if (res.status >= 400) {
          assert.equal(res.headers.get('content-type'), 'application/x-amz-json-1.1');
          assert.match(res.json!.__type, /^[A-Za-z]+Exception$/);
        }
      }),
      { numRuns: 1500 },
    );
    assert.ok((await gw.client.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256' }))).Plaintext, 'still serving');
  });

  it('answers any map in a map-typed member with a 2xx or a 4xx: odd keys, odd values', async () => {
    const key = fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom('', '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf'));
    const value = fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom(''), fc.anything({ maxDepth: 1 }));
    // Built as text: an object literal, and JSON.stringify of one, cannot carry a "__proto__" key.
    const mapText = fc.array(fc.tuple(key, value), { maxLength: 5 }).map((pairs) => `{${pairs.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v) ?? 'null'}`).join(',')}}`);
    const members: Array<[string, (m: string) => string]> = [
      ['Encrypt', (m) => `{"KeyId":"${keyId}","Plaintext":"eA==","EncryptionContext":${m}}`],
      ['Decrypt', (m) => `{"CiphertextBlob":"${blob}","EncryptionContext":${m}}`],
      ['GenerateDataKey', (m) => `{"KeyId":"${keyId}","KeySpec":"AES_256","EncryptionContext":${m}}`],
      ['ReEncrypt', (m) => `{"CiphertextBlob":"${blob}","DestinationKeyId":"${keyId}","SourceEncryptionContext":${m},"DestinationEncryptionContext":${m}}`],
      ['CreateGrant', (m) => `{"KeyId":"${keyId}","GranteePrincipal":"arn:aws:iam::111122223333:user/x","Operations":["Decrypt"],"Constraints":{"EncryptionContextEquals":${m}}}`],
    ];
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...members), mapText, async ([op, body], m) => {
        const res = await rawCall(gw.url, `TrentService.${op}`, body(m));
        assert.ok(res.status < 500, `${op} ${m} -> ${res.status} ${res.text}`);
      }),
      { numRuns: 500 },
    );
  });

  it('survives odd targets and headers', async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 60 }), fc.string({ maxLength: 40 }), async (target, contentType) => {
        const safe = (s: string) => s.replace(/[^\x20-\x7e]/g, 'x');
        const res = await rawCall(gw.url, safe(target), '{}', { headers: { 'content-type': safe(contentType) || 'x' } });
        assert.ok(res.status < 500, `${target} -> ${res.status} ${res.text}`);
      }),
      { numRuns: 300 },
    );
  });
});
