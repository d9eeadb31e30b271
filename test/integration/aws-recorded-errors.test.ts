import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { CreateKeyCommand, DisableKeyCommand } from '@aws-sdk/client-kms';
import { integration } from '../support/integration-hooks';
import { rawCall, startGateway, type Harness } from '../support/harness';

/**
 * Answers checked byte for byte against what AWS KMS answered the same requests (the recordings
 * behind issue #16's "Exact behaviours"): the wire body, as any client sees it.
 */
describe('Errors exactly as AWS KMS answers them (recorded)', function () {
  this.timeout(60000);
  let gw: Harness;
  const call = async (operation: string, body: object) => {
    const res = await rawCall(gw.url, `TrentService.${operation}`, JSON.stringify(body));
    return { status: res.status, json: res.json };
  };
  const create = async (input: object) => (await gw.client.send(new CreateKeyCommand(input))).KeyMetadata!;

  before(async () => {
    gw = await startGateway(integration().hsm);
  });
  after(() => gw.close());

  it('a JSON null member is absent: {"NumberOfBytes": null} is "NumberOfBytes is required.", a null Limit or Description is no limit or description', async () => {
    assert.deepEqual(await call('GenerateRandom', { NumberOfBytes: null }), { status: 400, json: { __type: 'ValidationException', message: 'NumberOfBytes is required.' } });
    assert.equal((await call('ListKeys', { Limit: null })).status, 200);
    const made = await call('CreateKey', { Description: null, Tags: null });
    assert.equal(made.status, 200);
    assert.equal((made.json!.KeyMetadata as { Description: string }).Description, '');
    const key = (made.json!.KeyMetadata as { KeyId: string }).KeyId;
    const sealed = await call('Encrypt', { KeyId: key, Plaintext: Buffer.from('x').toString('base64'), EncryptionContext: null, GrantTokens: null });
    assert.equal(sealed.status, 200);
  });

  it('GenerateMac, VerifyMac and Sign with an algorithm of another key spec name the algorithm and the spec only', async () => {
    const mac = await create({ KeySpec: 'HMAC_224', KeyUsage: 'GENERATE_VERIFY_MAC' });
    const message = Buffer.from('m').toString('base64');
    const expected = { status: 400, json: { __type: 'InvalidKeyUsageException', message: 'Algorithm HMAC_SHA_256 is incompatible with key spec HMAC_224.' } };
    assert.deepEqual(await call('GenerateMac', { KeyId: mac.KeyId, Message: message, MacAlgorithm: 'HMAC_SHA_256' }), expected);
    assert.deepEqual(await call('VerifyMac', { KeyId: mac.KeyId, Message: message, MacAlgorithm: 'HMAC_SHA_256', Mac: Buffer.alloc(32).toString('base64') }), expected);
    const ec = await create({ KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' });
    assert.deepEqual(await call('Sign', { KeyId: ec.KeyId, Message: message, SigningAlgorithm: 'ECDSA_SHA_384' }), {
      status: 400,
      json: { __type: 'InvalidKeyUsageException', message: 'Algorithm ECDSA_SHA_384 is incompatible with key spec ECC_NIST_P256.' },
    });
  });

  it('RotateKeyOnDemand checks the key state before its spec: a disabled RSA key is DisabledException, an enabled one UnsupportedOperationException with an empty message', async () => {
    const rsa = await create({ KeySpec: 'RSA_2048', KeyUsage: 'ENCRYPT_DECRYPT' });
    assert.deepEqual(await call('RotateKeyOnDemand', { KeyId: rsa.KeyId }), { status: 400, json: { __type: 'UnsupportedOperationException', message: '' } });
    await gw.client.send(new DisableKeyCommand({ KeyId: rsa.KeyId }));
    assert.deepEqual(await call('RotateKeyOnDemand', { KeyId: rsa.KeyId }), { status: 400, json: { __type: 'DisabledException', message: `${rsa.Arn} is disabled.` } });
  });

  it('DeriveSharedSecret with a public key that is not one on the key\'s curve is ValidationException with an empty message', async () => {
    const p256 = await create({ KeySpec: 'ECC_NIST_P256', KeyUsage: 'KEY_AGREEMENT' });
    const otherCurve = crypto.generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey.export({ type: 'spki', format: 'der' });
    for (const PublicKey of [otherCurve, Buffer.from('not a key')]) {
      assert.deepEqual(await call('DeriveSharedSecret', { KeyId: p256.KeyId, KeyAgreementAlgorithm: 'ECDH', PublicKey: PublicKey.toString('base64') }), {
        status: 400,
        json: { __type: 'ValidationException', message: '' },
      });
    }
  });

  it('a pattern constraint prints the pattern as AWS does, not as a JavaScript literal', async () => {
    const key = await create({});
    const res = await call('CreateGrant', { KeyId: key.KeyId, GranteePrincipal: 'arn:aws:iam::111122223333:role/app', Operations: ['Decrypt'], Name: 'bad name!' });
    assert.deepEqual(res, {
      status: 400,
      json: { __type: 'ValidationException', message: "1 validation error detected: Value 'bad name!' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$" },
    });
  });
});
