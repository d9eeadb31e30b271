import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CreateKeyCommand, GenerateDataKeyCommand, KMSClient, ListKeysCommand } from '@aws-sdk/client-kms';
import { integration } from '../support/integration-hooks';
import { registerSecret } from '../support/secrets';
import { rawCall, startGateway, TEST_CREDENTIALS, type Harness } from '../support/harness';

const MISMATCH =
  'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.';

/** kms-protocol.md §3: no request that fails SigV4 reaches an operation. */
describe('SigV4 authentication', () => {
  let gw: Harness;
  let credentialsFile: string;
  const alice = { accessKeyId: 'AKIAQKMSALICE000001', secretAccessKey: 'alice-secret-0123456789abcdef' };
  const bob = { accessKeyId: 'AKIAQKMSBOB00000001', secretAccessKey: 'bob-secret-0123456789abcdef' };
  // Only the fields: the SDK adds properties (e.g. $source) to credential objects it is given.
  for (const c of [alice, bob]) registerSecret(c.secretAccessKey);
  const writeCredentials = (list: Array<typeof alice & { principalArn: string }>) =>
    fs.writeFileSync(credentialsFile, JSON.stringify({ principals: list.map(({ accessKeyId, secretAccessKey, principalArn }) => ({ accessKeyId, secretAccessKey, principalArn, policy: ALLOW_ALL })) }));
  const ALLOW_ALL = { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 'kms:*', Resource: '*' }] };

  before(async () => {
    credentialsFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'qkms-creds-')), 'credentials.json');
    writeCredentials([{ ...alice, principalArn: 'arn:aws:iam::111122223333:user/alice' }]);
    gw = await startGateway(integration().hsm, { QKMS_CREDENTIALS_FILE: credentialsFile });
  });
  after(async () => {
    await gw.close();
    fs.rmSync(path.dirname(credentialsFile), { recursive: true, force: true });
  });

  const client = (overrides: Partial<ConstructorParameters<typeof KMSClient>[0]> = {}) =>
    new KMSClient({ endpoint: gw.url, region: 'us-east-1', credentials: TEST_CREDENTIALS, maxAttempts: 1, ...overrides });
  const keyCount = async () => (await gw.client.send(new ListKeysCommand({ Limit: 1000 }))).Keys!.length;
  const create = (c: KMSClient) => c.send(new CreateKeyCommand({ Description: 'must not exist' }));

  it('accepts the SDK signing with the admin credential and with a credentials-file principal', async () => {
    assert.ok((await create(client())).KeyMetadata);
    assert.ok((await create(client({ credentials: alice }))).KeyMetadata);
  });

  it('rejects a wrong secret (InvalidSignatureException) and an unknown access key (UnrecognizedClientException); nothing is created', async () => {
    const before = await keyCount();
    await assert.rejects(create(client({ credentials: { ...TEST_CREDENTIALS, secretAccessKey: 'wrong-secret-0123456789' } })), (e: Error) =>
      e.name === 'InvalidSignatureException' && e.message === MISMATCH);
    await assert.rejects(create(client({ credentials: { accessKeyId: 'AKIAQKMSNOBODY00001', secretAccessKey: 'whatever-0123456789' } })), (e: Error) =>
      e.name === 'UnrecognizedClientException' && e.message === 'The security token included in the request is invalid.');
    await assert.rejects(create(client({ credentials: { ...TEST_CREDENTIALS, sessionToken: 'FwoGZXIvYXdzEXAMPLE' } })), { name: 'UnrecognizedClientException' });
    assert.equal(await keyCount(), before);
  });

  it('rejects a skewed client clock in both directions with AWS-style messages', async () => {
    await assert.rejects(create(client({ systemClockOffset: -10 * 60_000 })), (e: Error) =>
      e.name === 'InvalidSignatureException' && /^Signature expired: \d{8}T\d{6}Z is now earlier than \d{8}T\d{6}Z \(\d{8}T\d{6}Z - 5 min\.\)$/.test(e.message));
    await assert.rejects(create(client({ systemClockOffset: 10 * 60_000 })), (e: Error) =>
      e.name === 'InvalidSignatureException' && /^Signature not yet current: .* is still later than .* \(.* \+ 5 min\.\)$/.test(e.message));
    assert.ok(await create(client({ systemClockOffset: -4 * 60_000 })));
  });

  it('refuses an X-Amz-Date that is not a real date (month 13) as not ISO 8601, rather than reading it as another day', async () => {
    for (const bad of ['20261301T000000Z', '20261202T250000Z', '2026-12-02T00:00:00Z']) {
      const res = await rawCall(gw.url, 'TrentService.ListKeys', '{}', { tamper: (r) => (r.headers['x-amz-date'] = bad) });
      assert.equal(res.status, 400);
      assert.deepEqual(res.json, { __type: 'IncompleteSignatureException', message: `Date must be in ISO-8601 'basic format'. Got '${bad}'. See http://en.wikipedia.org/wiki/ISO_8601` });
    }
  });

  it('rejects a credential scoped to another region or service', async () => {
    await assert.rejects(create(client({ region: 'eu-west-1' })), (e: Error) =>
      e.name === 'InvalidSignatureException' && e.message === "Credential should be scoped to a valid region, not 'eu-west-1'. This gateway serves region 'us-east-1' (QKMS_REGION): set the client's region to it.");
    const res = await rawCall(gw.url, 'TrentService.ListKeys', '{}', {
      tamper: (r) => (r.headers.authorization = r.headers.authorization.replace('/kms/aws4_request', '/s3/aws4_request')),
    });
    assert.deepEqual(res.json, { __type: 'InvalidSignatureException', message: "Credential should be scoped to correct service: 'kms'. " });
  });

  it('checks the credential scope component by component: an extra, missing or empty one is IncompleteSignatureException', async () => {
    const before = await keyCount();
    // The signature stays valid for these: the signer rebuilds the scope from date, region and service.
    for (const [from, to] of [['/aws4_request,', '/aws4_request/x,'], ['/aws4_request,', '/aws4_request/,'], ['/kms/aws4_request,', '/kms/x/aws4_request,'], ['/kms/aws4_request,', '/kms,']]) {
      const res = await rawCall(gw.url, 'TrentService.CreateKey', '{}', { tamper: (r) => (r.headers.authorization = r.headers.authorization.replace(from, to)) });
      assert.equal(res.status, 400, `${to}: ${res.text}`);
      assert.equal(res.json!.__type, 'IncompleteSignatureException', to);
      assert.match(res.json!.message, /^Credential is malformed: expected <access key>\/<date>\/<region>\/kms\/aws4_request\./);
    }
    assert.equal(await keyCount(), before);
  });

  it('MissingAuthenticationTokenException without Authorization; IncompleteSignatureException for a malformed one', async () => {
    const none = await rawCall(gw.url, 'TrentService.ListKeys', '{}', { credentials: false });
    assert.deepEqual([none.status, none.json], [400, { __type: 'MissingAuthenticationTokenException', message: 'Missing Authentication Token' }]);
    const bogus = await rawCall(gw.url, 'TrentService.ListKeys', '{}', { credentials: false, headers: { authorization: 'Bearer abc' } });
    assert.equal(bogus.json!.__type, 'IncompleteSignatureException');
    const partial = await rawCall(gw.url, 'TrentService.ListKeys', '{}', { tamper: (r) => (r.headers.authorization = r.headers.authorization.replace(/, Signature=\w+/, '')) });
    assert.deepEqual(partial.json, { __type: 'IncompleteSignatureException', message: "Authorization header requires 'Signature' parameter." });
    const noDate = await rawCall(gw.url, 'TrentService.ListKeys', '{}', { tamper: (r) => delete r.headers['x-amz-date'] });
    assert.equal(noDate.json!.__type, 'IncompleteSignatureException');
  });

  it('rejects a body, target or signed header altered after signing, even with the body hash header kept', async () => {
    const before = await keyCount();
    const body = JSON.stringify({ Description: 'a' });
    const altered = await rawCall(gw.url, 'TrentService.CreateKey', body, { tamper: (r) => (r.body = Buffer.from(JSON.stringify({ Description: 'b' }))) });
    assert.deepEqual(altered.json, { __type: 'InvalidSignatureException', message: MISMATCH });
    const withHash = await rawCall(gw.url, 'TrentService.CreateKey', body, {
      headers: { 'x-amz-content-sha256': require('node:crypto').createHash('sha256').update(body).digest('hex') },
      tamper: (r) => (r.body = Buffer.from(JSON.stringify({ Description: 'b' }))),
    });
    assert.equal(withHash.json!.__type, 'InvalidSignatureException');
    const retarget = await rawCall(gw.url, 'TrentService.ListKeys', '{}', { tamper: (r) => (r.headers['x-amz-target'] = 'TrentService.CreateKey') });
    assert.equal(retarget.json!.__type, 'InvalidSignatureException');
    const dropped = await rawCall(gw.url, 'TrentService.CreateKey', body, { tamper: (r) => delete r.headers['x-amz-target'] });
    assert.equal(dropped.json!.__type, 'InvalidSignatureException');
    // A request whose signer left X-Amz-Target out of SignedHeaders: the operation could be swapped.
    const unsignedTarget = await rawCall(gw.url, 'TrentService.ListKeys', '{}', {
      unsignedHeaders: ['x-amz-target'],
      tamper: (r) => (r.headers['x-amz-target'] = 'TrentService.CreateKey'),
    });
    assert.deepEqual(unsignedTarget.json, { __type: 'InvalidSignatureException', message: "'x-amz-target' must be a 'SignedHeader' in the AWS Authorization." });
    assert.equal(await keyCount(), before);
  });

  it('accepts a signed request replayed inside the window and refuses it after', async () => {
    const at = new Date(Date.now() - 60_000);
    assert.equal((await rawCall(gw.url, 'TrentService.ListKeys', '{}', { signingDate: at })).status, 200);
    assert.equal((await rawCall(gw.url, 'TrentService.ListKeys', '{}', { signingDate: at })).status, 200);
    const stale = await rawCall(gw.url, 'TrentService.ListKeys', '{}', { signingDate: new Date(Date.now() - 6 * 60_000) });
    assert.match(stale.json!.message, /^Signature expired/);
  });

  it('reloads the credentials file without a restart: new keys work, removed keys stop, a broken file changes nothing', async () => {
    await assert.rejects(create(client({ credentials: bob })), { name: 'UnrecognizedClientException' });
    writeCredentials([
      { ...alice, principalArn: 'arn:aws:iam::111122223333:user/alice' },
      { ...bob, principalArn: 'arn:aws:iam::111122223333:user/bob' },
    ]);
    await new Promise((r) => setTimeout(r, 1100));
    assert.ok(await create(client({ credentials: bob })));
    // Unquoted, so JSON.parse fails right at a secret; its message would quote the text around it.
    const broken = 'unquotedSecretAccessKeyValue0123456789';
    registerSecret(broken);
    fs.writeFileSync(credentialsFile, `{"principals":[{"accessKeyId":"AKIAQKMSBROKEN00001","secretAccessKey": ${broken}}]}`);
    await new Promise((r) => setTimeout(r, 1100));
    assert.ok(await create(client({ credentials: bob })), 'a broken file keeps the previous principals');
    // The request above may have reached another replica (npm run test:replicas): this process's
    // gateway finds the broken file on its own once-a-second check.
    for (const until = Date.now() + 3000; !/credentials file invalid/.test(gw.logText()) && Date.now() < until; ) await new Promise((r) => setTimeout(r, 50));
    assert.match(gw.logText(), /credentials file invalid; keeping the previous principals/);
    assert.ok(!gw.logText().includes(broken.slice(0, 9)), 'no part of the secret in the log');
    writeCredentials([{ ...alice, principalArn: 'arn:aws:iam::111122223333:user/alice' }]);
    await new Promise((r) => setTimeout(r, 1100));
    await assert.rejects(create(client({ credentials: bob })), { name: 'UnrecognizedClientException' });
  });

  it('a secret changed in the credentials file takes effect: the old one stops verifying', async () => {
    writeCredentials([{ ...alice, principalArn: 'arn:aws:iam::111122223333:user/alice' }]);
    await new Promise((r) => setTimeout(r, 1100));
    assert.ok(await create(client({ credentials: alice })));
    const rotated = { ...alice, secretAccessKey: 'alice-rotated-secret-0123456789' };
    registerSecret(rotated.secretAccessKey);
    writeCredentials([{ ...rotated, principalArn: 'arn:aws:iam::111122223333:user/alice' }]);
    await new Promise((r) => setTimeout(r, 1100));
    await assert.rejects(create(client({ credentials: alice })), { name: 'InvalidSignatureException' });
    assert.ok(await create(client({ credentials: rotated })));
  });

  it('never writes a secret access key or signature to the log, and logs the principal per request', async () => {
    await gw.client.send(new GenerateDataKeyCommand({ KeyId: (await create(client())).KeyMetadata!.KeyId, KeySpec: 'AES_256' }));
    const logs = gw.logText();
    for (const secret of [TEST_CREDENTIALS.secretAccessKey, alice.secretAccessKey, bob.secretAccessKey]) assert.ok(!logs.includes(secret));
    assert.ok(!/Signature=[0-9a-f]{64}/.test(logs));
    assert.match(logs, /"principal":"arn:aws:iam::111122223333:root"/);
  });
});
