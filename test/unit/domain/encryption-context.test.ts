import assert from 'node:assert/strict';
import { encodeEncryptionContext } from '../../../src/domain/encryption-context';
import { ValidationException } from '../../../src/errors/kms-errors';

describe('Encryption context encoding', () => {
  const enc = (c?: Record<string, string>) => encodeEncryptionContext(c, 8192);

  it('is length-prefixed, so {"ab":"c"} and {"a":"bc"} differ', () => {
    assert.notDeepEqual(enc({ ab: 'c' }), enc({ a: 'bc' }));
    assert.equal(enc({ ab: 'c' }).toString('hex'), '00000001' + '00000002' + '6162' + '00000001' + '63');
  });

  it('does not depend on member order', () => {
    assert.deepEqual(enc({ a: '1', b: '2', c: '3' }), enc({ c: '3', a: '1', b: '2' }));
  });

  it('encodes no context as four zero bytes (never empty AAD), distinct from an empty pair', () => {
    assert.equal(enc(undefined).toString('hex'), '00000000');
    assert.deepEqual(enc({}), enc(undefined));
    assert.notDeepEqual(enc({ '': '' }), enc({}));
  });

  it('is case-sensitive and UTF-8 exact', () => {
    assert.notDeepEqual(enc({ a: 'x' }), enc({ A: 'x' }));
    assert.equal(enc({ 'é': 'ü' }).length, 4 + 4 + 2 + 4 + 2);
  });

  it('rejects a lone surrogate (it would collide with U+FFFD) and an oversized context', () => {
    assert.throws(() => enc({ '\ud800': 'v' }), ValidationException);
    assert.throws(() => encodeEncryptionContext({ k: 'x'.repeat(100) }, 64), ValidationException);
  });
});
