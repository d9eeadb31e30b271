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

/**
 * Every map-typed member (string -> string): EncryptionContext in each operation, ReEncrypt's two
 * contexts and the grant constraints. A JSON body can put anything in them.
 */
describe('Map-typed members', () => {
  const BLOB = Buffer.from('x').toString('base64');
  const MAPS: Array<[string, (m: unknown) => object]> = [
    ['Encrypt', (m) => ({ KeyId: 'k', Plaintext: BLOB, EncryptionContext: m })],
    ['Decrypt', (m) => ({ CiphertextBlob: BLOB, EncryptionContext: m })],
    ['GenerateDataKey', (m) => ({ KeyId: 'k', KeySpec: 'AES_256', EncryptionContext: m })],
    ['GenerateDataKeyWithoutPlaintext', (m) => ({ KeyId: 'k', KeySpec: 'AES_256', EncryptionContext: m })],
    ['GenerateDataKeyPair', (m) => ({ KeyId: 'k', KeyPairSpec: 'RSA_2048', EncryptionContext: m })],
    ['GenerateDataKeyPairWithoutPlaintext', (m) => ({ KeyId: 'k', KeyPairSpec: 'RSA_2048', EncryptionContext: m })],
    ['ReEncrypt', (m) => ({ CiphertextBlob: BLOB, DestinationKeyId: 'k', SourceEncryptionContext: m })],
    ['ReEncrypt', (m) => ({ CiphertextBlob: BLOB, DestinationKeyId: 'k', DestinationEncryptionContext: m })],
    ['CreateGrant', (m) => ({ KeyId: 'k', GranteePrincipal: 'p', Operations: ['Decrypt'], Constraints: { EncryptionContextSubset: m } })],
    ['CreateGrant', (m) => ({ KeyId: 'k', GranteePrincipal: 'p', Operations: ['Decrypt'], Constraints: { EncryptionContextEquals: m } })],
  ];
  const errorOf = (op: string, body: object): unknown => {
    try {
      validateInput(registry.get(op)!.schema, body);
    } catch (err) {
      return err;
    }
    return undefined;
  };

  it('a value that is not a string is SerializationException, whatever the key (an empty one too)', () => {
    for (const [op, body] of MAPS) {
      for (const map of ['{"":5}', '{"a":5}', '{"":null}', '{"a":{}}', '{"a":["x"]}', '{"a":true}', '{"__proto__":5}', '{"__proto__":{"a":"b"}}', '[]', '"x"']) {
        const err = errorOf(op, body(JSON.parse(map)));
        assert.ok(err instanceof E.SerializationException, `${op} ${map}: ${String(err)}`);
      }
    }
  });

  it('an empty key or an empty value is ValidationException in AWS form, naming the member but not the context', () => {
    for (const [op, body] of MAPS) {
      for (const map of [{ '': 'secret-value' }, { 'secret-key': '' }]) {
        const err = errorOf(op, body(map));
        assert.ok(err instanceof E.ValidationException, `${op} ${JSON.stringify(map)}: ${String(err)}`);
        assert.match(err.message, /^1 validation error detected: Value at '[a-zA-Z.]*ncryptionContext[a-zA-Z]*' failed to satisfy constraint: Map (keys|value) must satisfy constraint: \[Member must have length greater than or equal to 1\]$/);
        assert.ok(!err.message.includes('secret'), err.message);
      }
    }
  });

  it('keeps __proto__ and the names of Object.prototype as ordinary keys, and nothing inherited', () => {
    const raw = JSON.parse('{"__proto__":"tenant-a","constructor":"c","toString":"t","hasOwnProperty":"h"}') as Record<string, string>;
    for (const [op, body] of MAPS) {
      const value = validateInput<Record<string, any>>(registry.get(op)!.schema, body(raw));
      const map = value.EncryptionContext ?? value.SourceEncryptionContext ?? value.DestinationEncryptionContext ??
        value.Constraints.EncryptionContextSubset ?? value.Constraints.EncryptionContextEquals;
      assert.deepEqual(Object.entries(map), Object.entries(raw), op);
      assert.equal(Object.getPrototypeOf(map), null, `${op}: a lookup of an absent key must not find Object.prototype's members`);
      assert.equal(JSON.stringify(map), JSON.stringify(raw), op);
    }
  });
});
