import assert from 'node:assert/strict';
import {
  CreateKeyCommand,
  DecryptCommand,
  DependencyTimeoutException,
  DisabledException,
  DisableKeyCommand,
  GenerateDataKeyCommand,
  IncorrectKeyException,
  InvalidGrantTokenException,
  KeyUnavailableException,
  KMSInternalException,
  KMSInvalidStateException,
  NotFoundException,
  ScheduleKeyDeletionCommand,
} from '@aws-sdk/client-kms';
import { formatGrantToken } from '../../src/domain/grant-token';
import { integration } from '../support/integration-hooks';
import { rawCall, startGateway, type Harness } from '../support/harness';

/** The seed page's eight special errors, each from its real condition, as the SDK sees them. */
describe("GenerateDataKey's special errors", () => {
  let gw: Harness;
  const newKey = async () => (await gw.client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
  const gdk = (KeyId: string, extra: Record<string, unknown> = {}) => gw.client.send(new GenerateDataKeyCommand({ KeyId, KeySpec: 'AES_256', ...extra }));

  before(async () => {
    // Short enough for the timeout test, long enough that a loaded machine's CreateKey is not one.
    gw = await startGateway(integration().hsm, { QKMS_HSM_TIMEOUT_MS: '1500' });
  });
  after(() => gw.close());
  afterEach(() => gw.faults.clear());

  describe('NotFoundException', () => {
    it('for a well-formed key id that does not exist, naming the ARN', async () => {
      const id = '00000000-0000-4000-8000-000000000000';
      await assert.rejects(gdk(id), (e: Error) => e instanceof NotFoundException && e.message === `Key 'arn:verenc:111122223333:key/${id}' does not exist`);
    });
    it('for a malformed key id', async () => {
      await assert.rejects(gdk('fake-key-id'), (e: Error) => e instanceof NotFoundException && e.message === "Invalid keyId 'fake-key-id'");
    });
    it('for an ARN of another region, and one of another account', async () => {
      const id = await newKey();
      await assert.rejects(gdk(`arn:aws:kms:eu-west-1:111122223333:key/${id}`), (e: Error) => e instanceof NotFoundException && e.message === 'Invalid arn eu-west-1');
      await assert.rejects(gdk(`arn:verenc:999999999999:key/${id}`), NotFoundException);
    });
    it('for an alias that does not exist', async () => {
      await assert.rejects(gdk('alias/missing'), (e: Error) => e instanceof NotFoundException && e.message === 'Alias arn:verenc:111122223333:alias/missing is not found.');
    });
    it('accepts the key ARN in both forms', async () => {
      const id = await newKey();
      assert.ok((await gdk(`arn:verenc:111122223333:key/${id}`)).Plaintext);
      assert.ok((await gdk(`arn:aws:kms:us-east-1:111122223333:key/${id}`)).Plaintext);
    });
  });

  it('DisabledException for a disabled key, with AWS message', async () => {
    const id = await newKey();
    await gw.client.send(new DisableKeyCommand({ KeyId: id }));
    await assert.rejects(gdk(id), (e: Error) => e instanceof DisabledException && e.message === `arn:verenc:111122223333:key/${id} is disabled.`);
  });

  it('KMSInvalidStateException for a key pending deletion, and Decrypt answers the same', async () => {
    const id = await newKey();
    const { CiphertextBlob } = await gdk(id);
    await gw.client.send(new ScheduleKeyDeletionCommand({ KeyId: id, PendingWindowInDays: 7 }));
    await assert.rejects(gdk(id), (e: Error) => e instanceof KMSInvalidStateException && e.message === `arn:verenc:111122223333:key/${id} is pending deletion.`);
    await assert.rejects(gw.client.send(new DecryptCommand({ CiphertextBlob })), KMSInvalidStateException);
  });

  describe('InvalidGrantTokenException', () => {
    it('for a malformed grant token', async () => {
      await assert.rejects(gdk(await newKey(), { GrantTokens: ['not-a-grant-token'] }), InvalidGrantTokenException);
    });
    it('for a well-formed token that names no grant', async () => {
      const token = formatGrantToken('00112233445566778899aabbccddeeff'.repeat(2), Buffer.alloc(32, 7));
      await assert.rejects(gdk(await newKey(), { GrantTokens: [token] }), InvalidGrantTokenException);
    });
  });

  describe('KeyUnavailableException', () => {
    it("when the key's material was removed from the token", async () => {
      const id = await newKey();
      const [material] = await gw.deps.keys.listMaterialsOf(id);
      await integration().hsm.destroyKey(material.objects.kek);
      await assert.rejects(gdk(id), KeyUnavailableException);
    });
    it('when the token reports a device error; the next call works again', async () => {
      const id = await newKey();
      gw.faults.add({ method: 'generateWrappedDataKey', times: 1, fail: { kind: 'device', ckr: 'CKR_DEVICE_ERROR' } });
      await assert.rejects(gdk(id), KeyUnavailableException);
      assert.ok((await gdk(id)).Plaintext);
    });
  });

  it('DependencyTimeoutException when an HSM call exceeds QKMS_HSM_TIMEOUT_MS', async () => {
    const id = await newKey();
    gw.faults.add({ method: 'generateWrappedDataKey', times: 1, delayMs: 2500 });
    await assert.rejects(gdk(id), DependencyTimeoutException);
  });

  it('KMSInternalException for anything unexpected, logged with the request id and without detail on the wire', async () => {
    const id = await newKey();
    gw.faults.add({ method: 'hmacSign', times: 1, fail: { kind: 'internal', ckr: 'CKR_FUNCTION_FAILED' } });
    const res = await rawCall(gw.url, 'TrentService.GenerateDataKey', JSON.stringify({ KeyId: id, KeySpec: 'AES_256' }));
    assert.equal(res.status, 500);
    assert.equal(res.json!.__type, 'KMSInternalException');
    assert.ok(!res.text.includes('CKR_'));
    const requestId = res.headers.get('x-amzn-requestid')!;
    const line = gw.logText().split('\n').find((l) => l.includes(requestId) && l.includes('CKR_FUNCTION_FAILED'));
    assert.ok(line, 'the cause is logged with the request id');
    gw.faults.add({ method: 'hmacSign', times: 1, fail: { kind: 'internal' } });
    await assert.rejects(gdk(id), KMSInternalException);
  });

  it('Decrypt with a KeyId other than the encrypting key is IncorrectKeyException', async () => {
    const [a, b] = [await newKey(), await newKey()];
    const { CiphertextBlob } = await gdk(a);
    await assert.rejects(gw.client.send(new DecryptCommand({ CiphertextBlob, KeyId: b })), (e: Error) => e instanceof IncorrectKeyException && e.message === 'The key ID in the request does not identify a CMK that can perform this operation.');
    assert.ok((await gw.client.send(new DecryptCommand({ CiphertextBlob, KeyId: `arn:verenc:111122223333:key/${a}` }))).Plaintext);
  });
});
