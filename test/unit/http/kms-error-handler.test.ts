import assert from 'node:assert/strict';
import * as E from '../../../src/errors/kms-errors';
import { HsmError } from '../../../src/hsm/hsm-error';
import { toKmsError } from '../../../src/http/kms-error-handler';

describe('Error mapping', () => {
  const table: Array<[unknown, number, string]> = [
    [E.NotFoundException.invalidKeyId('x'), 400, `{"__type":"NotFoundException","message":"Invalid keyId 'x'"}`],
    [E.DisabledException.forKey('arn:k'), 400, '{"__type":"DisabledException","message":"arn:k is disabled."}'],
    [E.KMSInvalidStateException.pendingDeletion('arn:k'), 400, '{"__type":"KMSInvalidStateException","message":"arn:k is pending deletion."}'],
    [E.InvalidKeyUsageException.forOperation('arn:k', 'SIGN_VERIFY', 'Encrypt'), 400, '{"__type":"InvalidKeyUsageException","message":"arn:k key usage is SIGN_VERIFY which is not valid for Encrypt."}'],
    [new E.InvalidCiphertextException(), 400, '{"__type":"InvalidCiphertextException"}'],
    [E.InvalidGrantTokenException.malformed(), 400, '{"__type":"InvalidGrantTokenException","message":"The grant token is malformed."}'],
    [new HsmError('timeout', 'C_WrapKey'), 500, '{"__type":"DependencyTimeoutException","message":"The HSM did not answer within the configured timeout."}'],
    [new HsmError('key', 'C_WrapKey', 'CKR_KEY_HANDLE_INVALID'), 500, '{"__type":"KeyUnavailableException","message":"The key material is not available in the HSM."}'],
    [new HsmError('device', 'C_WrapKey', 'CKR_DEVICE_REMOVED'), 500, '{"__type":"KeyUnavailableException","message":"The HSM that holds the key is not available."}'],
    [new HsmError('config', 'C_WrapKey', 'CKR_MECHANISM_INVALID'), 500, '{"__type":"KMSInternalException","message":"An internal error occurred. Quote the request id when reporting it."}'],
    [new TypeError('boom with secret detail'), 500, '{"__type":"KMSInternalException","message":"An internal error occurred. Quote the request id when reporting it."}'],
    [Object.assign(new Error('too large'), { type: 'entity.too.large', status: 413 }), 400, '{"__type":"ValidationException","message":"The request body exceeds the size limit."}'],
  ];
  for (const [err, status, body] of table) {
    it(`${(err as Error).constructor.name} ${(err as Error).message} -> ${status} ${body.slice(0, 40)}`, () => {
      const k = toKmsError(err);
      assert.equal(k.status, status);
      assert.equal(JSON.stringify(k.toBody()), body);
    });
  }
});
