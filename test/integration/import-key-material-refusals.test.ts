import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { CreateKeyCommand, DescribeKeyCommand, GetParametersForImportCommand, ImportKeyMaterialCommand, type AlgorithmSpec, type KeySpec, type KeyUsageType } from '@aws-sdk/client-kms';
import { wrapKeyMaterial } from '../support/import-wrap';
import { integration } from '../support/integration-hooks';
import { startGateway, type Harness } from '../support/harness';

const pkcs8 = (key: crypto.KeyObject) => key.export({ type: 'pkcs8', format: 'der' });

/**
 * Material a client can send that the key cannot take: every refusal is the AWS-like 4xx (never a
 * 500, never "this HSM cannot"), and leaves the key, the token and the store as they were.
 */
describe('ImportKeyMaterial refuses material that does not fit, as a client error, leaving nothing behind', function () {
  this.timeout(120000);
  let gw: Harness;
  before(async () => {
    gw = await startGateway(integration().hsm);
  });
  after(() => gw.close());

  async function refused(spec: KeySpec, usage: KeyUsageType | undefined, algorithm: AlgorithmSpec, material: Buffer, expected: string, options: { extra?: Record<string, unknown>; editBody?: (body: string) => string } = {}) {
    const { KeyMetadata } = await gw.client.send(new CreateKeyCommand({ Origin: 'EXTERNAL', KeySpec: spec, KeyUsage: usage }));
    const KeyId = KeyMetadata!.KeyId!;
    const params = await gw.client.send(new GetParametersForImportCommand({ KeyId, WrappingAlgorithm: algorithm, WrappingKeySpec: 'RSA_2048' }));
    const objects = (await gw.deps.hsm.listKeyObjects(`qkms/${KeyId}/`)).map((o) => o.id).sort();
    const command = new ImportKeyMaterialCommand({ KeyId, ImportToken: params.ImportToken, EncryptedKeyMaterial: wrapKeyMaterial(params.PublicKey!, algorithm, material), ExpirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE', ...options.extra });
    const { editBody } = options;
    // What the SDK cannot send, sent as a client could: the JSON body edited before it is signed.
    if (editBody) {
      command.middlewareStack.add((next) => async (args) => {
        const request = args.request as { body: unknown; headers: Record<string, string> };
        request.body = editBody(Buffer.from(request.body as Uint8Array).toString('utf8'));
        request.headers['content-length'] = String(Buffer.byteLength(request.body as string));
        return next(args);
      }, { step: 'build', priority: 'low' });
    }
    await assert.rejects(
      gw.client.send(command),
      (e: Error & { $metadata?: { httpStatusCode?: number } }) => {
        assert.equal(`${e.$metadata?.httpStatusCode} ${e.name}`, `400 ${expected}`, e.message);
        return true;
      },
    );
    assert.deepEqual((await gw.deps.hsm.listKeyObjects(`qkms/${KeyId}/`)).map((o) => o.id).sort(), objects, 'only the wrapping pair is on the token');
    assert.deepEqual((await gw.deps.keys.listIntents()).filter((i) => i.keyId === KeyId), []);
    assert.equal((await gw.client.send(new DescribeKeyCommand({ KeyId }))).KeyMetadata!.KeyState, 'PendingImport');
  }

  for (const [bytes, algorithm] of [[1, 'RSAES_OAEP_SHA_1'], [31, 'RSAES_OAEP_SHA_1'], [33, 'RSAES_OAEP_SHA_256'], [64, 'RSAES_OAEP_SHA_1'], [1, 'RSA_AES_KEY_WRAP_SHA_1'], [40, 'RSA_AES_KEY_WRAP_SHA_256']] as const) {
    it(`SYMMETRIC_DEFAULT: ${bytes} bytes (${algorithm}) is IncorrectKeyMaterialException`, () =>
      refused('SYMMETRIC_DEFAULT', undefined, algorithm, crypto.randomBytes(bytes), 'IncorrectKeyMaterialException'));
  }

  for (const [spec, bytes, algorithm] of [['HMAC_256', 1, 'RSAES_OAEP_SHA_1'], ['HMAC_256', 24, 'RSAES_OAEP_SHA_256'], ['HMAC_512', 33, 'RSAES_OAEP_SHA_1'], ['HMAC_512', 48, 'RSA_AES_KEY_WRAP_SHA_1'], ['HMAC_256', 2000, 'RSA_AES_KEY_WRAP_SHA_1'], ['HMAC_512', 4000, 'RSA_AES_KEY_WRAP_SHA_256']] as const) {
    it(`${spec}: ${bytes} bytes (${algorithm}) is IncorrectKeyMaterialException`, () =>
      refused(spec, 'GENERATE_VERIFY_MAC', algorithm, crypto.randomBytes(bytes), 'IncorrectKeyMaterialException'));
  }

  const notPkcs8: Array<[string, KeySpec, () => Buffer]> = [
    ['random bytes', 'RSA_2048', () => crypto.randomBytes(150)],
    ['a PKCS#1 RSA key', 'RSA_2048', () => crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs1', format: 'der' })],
    ['a P-256 key', 'RSA_2048', () => pkcs8(crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey)],
    ['an RSA key', 'ECC_NIST_P256', () => pkcs8(crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey)],
    ['an Ed25519 key', 'ECC_NIST_P256', () => pkcs8(crypto.generateKeyPairSync('ed25519').privateKey)],
    ['an X25519 key', 'ECC_NIST_P256', () => pkcs8(crypto.generateKeyPairSync('x25519').privateKey)],
    ['a SEC1 EC key', 'ECC_NIST_P256', () => crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'sec1', format: 'der' })],
    ['a truncated PKCS#8 EC key', 'ECC_NIST_P256', () => pkcs8(crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey).subarray(0, 60)],
  ];
  for (const [what, spec, make] of notPkcs8) {
    for (const algorithm of ['RSA_AES_KEY_WRAP_SHA_1', 'RSA_AES_KEY_WRAP_SHA_256', 'RSAES_OAEP_SHA_1', 'RSAES_OAEP_SHA_256'] as const) {
      const material = make();
      // RSAES-OAEP with RSA_2048 and SHA-1 carries at most 214 bytes.
      if (algorithm.startsWith('RSAES') && material.length > 190) continue;
      it(`${spec}: ${what} (${algorithm}) is InvalidCiphertextException`, () => refused(spec, 'SIGN_VERIFY', algorithm, material, 'InvalidCiphertextException'));
    }
  }

  for (const seconds of ['1e13', '8640000000001', '1e300']) {
    it(`ValidTo ${seconds} (past the largest date JavaScript holds) is ValidationException, not material that never expires`, () =>
      refused('SYMMETRIC_DEFAULT', undefined, 'RSAES_OAEP_SHA_1', crypto.randomBytes(32), seconds === '1e300' ? 'SerializationException' : 'ValidationException', {
        extra: { ExpirationModel: 'KEY_MATERIAL_EXPIRES', ValidTo: new Date(gw.clock.now.getTime() + 3600_000) },
        editBody: (body) => body.replace(/"ValidTo":[0-9.e+]+/, `"ValidTo":${seconds}`),
      }));
  }
});
