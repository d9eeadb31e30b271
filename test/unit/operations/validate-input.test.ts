import assert from 'node:assert/strict';
import * as E from '../../../src/errors/kms-errors';
import { registry } from '../../../src/operations/registry';
import { validateInput } from '../../../src/operations/validate-input';

const messageOf = (op: string, body: object): string => {
  try {
    validateInput(registry.get(op)!.schema, body);
  } catch (err) {
    assert.ok(err instanceof E.ValidationException);
    return err.message;
  }
  throw new Error('expected a ValidationException');
};

describe('Validation messages', () => {
  it('name the member in AWS form and show ordinary values', () => {
    assert.equal(messageOf('GenerateDataKey', { KeyId: 'k', NumberOfBytes: 0 }),
      "1 validation error detected: Value '0' at 'numberOfBytes' failed to satisfy constraint: Member must have value greater than or equal to 1");
  });

  it('never echo plaintexts or grant tokens (bearer credentials)', () => {
    const token = `qgt1.${'S'.repeat(8200)}`;
    for (const [op, body, path] of [
      ['RetireGrant', { GrantToken: token }, 'grantToken'],
      ['GenerateDataKey', { KeyId: 'k', KeySpec: 'AES_256', GrantTokens: [token] }, 'grantTokens.1.member'],
      ['Encrypt', { KeyId: 'k', Plaintext: Buffer.alloc(4097, 83).toString('base64') }, 'plaintext'],
    ] as const) {
      const message = messageOf(op, body);
      assert.ok(!message.includes('SSSS') && !message.includes('U1NT'), `${op} echoes the value: ${message.slice(0, 80)}`);
      assert.match(message, new RegExp(`^1 validation error detected: Value at '${path.replace(/\./g, '\\.')}' failed`));
    }
  });
});
