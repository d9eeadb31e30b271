import assert from 'node:assert/strict';
import { CreateKeyCommand } from '@aws-sdk/client-kms';
import { integration } from '../support/integration-hooks';
import { rawCall, startGateway, type Harness } from '../support/harness';

/** awsJson1_1 as kms-protocol.md §1-2 describes it; bad input is a 4xx KMS error, never a 5xx. */
describe('Protocol and bad input', () => {
  let gw: Harness;
  let keyId: string;
  before(async () => {
    gw = await startGateway(integration().hsm, { QKMS_MAX_BODY_BYTES: '16384', QKMS_HSM_TIMEOUT_MS: '200' });
    keyId = (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
  });
  after(() => gw.close());

  const expectError = async (res: Awaited<ReturnType<typeof rawCall>>, type: string, message?: string | RegExp) => {
    assert.equal(res.status, 400, res.text);
    assert.equal(res.headers.get('content-type'), 'application/x-amz-json-1.1');
    assert.match(res.headers.get('x-amzn-requestid') ?? '', /^[0-9a-f-]{36}$/);
    assert.equal(res.json!.__type, type, res.text);
    assert.equal(res.headers.get('x-amzn-errortype'), type);
    if (typeof message === 'string') assert.equal(res.json!.message, message);
    else if (message) assert.match(res.json!.message, message);
  };
  const gdk = (body: unknown) => rawCall(gw.url, 'TrentService.GenerateDataKey', typeof body === 'string' ? body : JSON.stringify(body));

  it('UnknownOperationException for an unknown, missing or malformed X-Amz-Target', async () => {
    await expectError(await rawCall(gw.url, 'TrentService.NoSuchThing', '{}'), 'UnknownOperationException');
    await expectError(await rawCall(gw.url, undefined, '{}'), 'UnknownOperationException');
    await expectError(await rawCall(gw.url, 'OtherService.GenerateDataKey', '{}'), 'UnknownOperationException');
    await expectError(await rawCall(gw.url, 'TrentService.constructor', '{}'), 'UnknownOperationException');
    await expectError(await rawCall(gw.url, 'TrentService.__proto__', '{}'), 'UnknownOperationException');
  });

  it('answers other paths and methods with a KMS error, not HTML', async () => {
    const res = await fetch(`${gw.url}/nope`, { method: 'POST' });
    assert.equal(res.headers.get('content-type'), 'application/x-amz-json-1.1');
    assert.equal(((await res.json()) as { __type: string }).__type, 'UnknownOperationException');
    const get = await fetch(`${gw.url}/`);
    assert.equal(((await get.json()) as { __type: string }).__type, 'UnknownOperationException');
  });

  it('SerializationException for bad JSON, a non-object body, wrong JSON types and bad base64', async () => {
    await expectError(await gdk('{"KeyId": '), 'SerializationException');
    await expectError(await gdk('[1,2]'), 'SerializationException');
    await expectError(await gdk('null'), 'SerializationException');
    await expectError(await gdk({ KeyId: 42, KeySpec: 'AES_256' }), 'SerializationException', "Value for 'keyId' must be a string.");
    await expectError(await gdk({ KeyId: keyId, NumberOfBytes: '32' }), 'SerializationException');
    await expectError(await gdk({ KeyId: keyId, NumberOfBytes: 1.5 }), 'SerializationException');
    await expectError(await gdk({ KeyId: keyId, KeySpec: 'AES_256', EncryptionContext: { a: 1 } }), 'SerializationException');
    await expectError(await gdk({ KeyId: keyId, KeySpec: 'AES_256', EncryptionContext: ['a'] }), 'SerializationException');
    await expectError(await gdk({ KeyId: keyId, KeySpec: 'AES_256', GrantTokens: 'x' }), 'SerializationException');
    const decrypt = (b: string) => rawCall(gw.url, 'TrentService.Decrypt', JSON.stringify({ CiphertextBlob: b }));
    await expectError(await decrypt('not base64!'), 'SerializationException', "Value for 'ciphertextBlob' must be a base64-encoded blob.");
    await expectError(await decrypt('AAA'), 'SerializationException');
  });

  it('treats an empty body as {} and reports the missing member', async () => {
    await expectError(await gdk(''), 'ValidationException', "1 validation error detected: Value at 'keyId' failed to satisfy constraint: Member must not be null");
  });

  it('ValidationException with AWS wording for constraint violations', async () => {
    await expectError(await gdk({ KeyId: keyId, NumberOfBytes: 0 }), 'ValidationException',
      "1 validation error detected: Value '0' at 'numberOfBytes' failed to satisfy constraint: Member must have value greater than or equal to 1");
    await expectError(await gdk({ KeyId: keyId, NumberOfBytes: 1025 }), 'ValidationException', /less than or equal to 1024/);
    await expectError(await gdk({ KeyId: keyId, KeySpec: 'AES_512' }), 'ValidationException', /Member must satisfy enum value set: \[AES_256, AES_128\]/);
    await expectError(await gdk({ KeyId: '' }), 'ValidationException', /at 'keyId' failed to satisfy constraint: Member must have length greater than or equal to 1/);
    await expectError(await gdk({ KeyId: keyId, NumberOfBytes: 0, KeySpec: 'X' }), 'ValidationException', /^2 validation errors detected: /);
    await expectError(await gdk({ KeyId: keyId, KeySpec: 'AES_256', GrantTokens: Array(11).fill('t') }), 'ValidationException', /grantTokens/);
  });

  it('ValidationException when both or neither of KeySpec and NumberOfBytes are given', async () => {
    await expectError(await gdk({ KeyId: keyId }), 'ValidationException', 'Please specify either number of bytes or key spec.');
    await expectError(await gdk({ KeyId: keyId, KeySpec: 'AES_256', NumberOfBytes: 32 }), 'ValidationException');
  });

  it('ValidationException for an oversized body or encryption context', async () => {
    await expectError(await gdk({ KeyId: keyId, KeySpec: 'AES_256', EncryptionContext: { big: 'x'.repeat(20000) } }), 'ValidationException', 'The request body exceeds the size limit.');
    const bigContext = Object.fromEntries(Array.from({ length: 600 }, (_, i) => [`key-${i}`, 'v']));
    await expectError(await gdk({ KeyId: keyId, KeySpec: 'AES_256', EncryptionContext: bigContext }), 'ValidationException', /Encryption context is too large/);
  });

  it('ignores unknown members and accepts DryRun with DryRunOperationException', async () => {
    const ok = await gdk({ KeyId: keyId, KeySpec: 'AES_256', SomethingNew: true });
    assert.equal(ok.status, 200);
    await expectError(await gdk({ KeyId: keyId, KeySpec: 'AES_256', DryRun: true }), 'DryRunOperationException', 'The request would have succeeded, but the DryRun option is set.');
  });

  it('never echoes a plaintext-like value in an error message', async () => {
    const res = await rawCall(gw.url, 'TrentService.Decrypt', JSON.stringify({ CiphertextBlob: '' }));
    assert.equal(res.json!.__type, 'ValidationException');
    assert.equal(res.json!.message, "1 validation error detected: Value at 'ciphertextBlob' failed to satisfy constraint: Member must have length greater than or equal to 1");
  });

  it('survives a burst of garbage without a 5xx and keeps serving', async () => {
    const bodies = ['{', '}', '{"KeyId":{}}', '\u0000\u0001', '{"KeyId":"' + 'a'.repeat(3000) + '"}', '{"KeyId":"x","EncryptionContext":{"\\ud800":"v"},"KeySpec":"AES_256"}'];
    for (const b of bodies) {
      const res = await gdk(b);
      assert.ok(res.status < 500, `${b.slice(0, 20)} -> ${res.status} ${res.text}`);
    }
    assert.equal((await gdk({ KeyId: keyId, KeySpec: 'AES_256' })).status, 200);
  });

  it('/ready answers 200 while the token answers and 503 when it does not or is too slow; /health (liveness) 200 throughout', async () => {
    // The token check runs at most every 250 ms (src/http/probes.ts): wait out the last answer.
    const probe = async (which: 'ready' | 'health') => {
      await new Promise((r) => setTimeout(r, 260));
      return fetch(`${gw.url}/${which}`);
    };
    assert.equal((await probe('ready')).status, 200);
    gw.faults.add({ method: 'health', times: 1, fail: { kind: 'device', ckr: 'CKR_DEVICE_REMOVED' } });
    const down = await probe('ready');
    assert.equal(down.status, 503);
    assert.equal(((await down.json()) as { status: string }).status, 'not ready');
    gw.faults.add({ method: 'health', times: 1, fail: { kind: 'device', ckr: 'CKR_DEVICE_REMOVED' } });
    assert.equal((await probe('health')).status, 200, 'liveness does not ask the token');
    assert.equal((await probe('ready')).status, 503, 'the fault was still there for /ready: /health did not consume it');
    gw.faults.add({ method: 'health', times: 1, delayMs: 600 });
    assert.equal((await probe('ready')).status, 503, 'a token slower than QKMS_HSM_TIMEOUT_MS is down');
    assert.equal((await probe('ready')).status, 200);
  });
});
