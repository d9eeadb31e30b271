import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { ecdsaDerToRaw, ecdsaRawToDer, unwrapEcPoint } from '../../../src/hsm/pkcs11/der';

/** node:crypto is the oracle: it signs in both encodings (ieee-p1363 = the raw r‖s of CKM_ECDSA, and DER). */
describe('DER for ECDSA signatures and EC points', function () {
  this.timeout(20000); // 100 signatures per curve; P-521 is slow
  for (const [curve, hash, field] of [['P-256', 'sha256', 32], ['P-384', 'sha384', 48], ['P-521', 'sha512', 66], ['secp256k1', 'sha256', 32]] as const) {
    it(`${curve}: raw r‖s ↔ DER both ways, including integers with a high bit or leading zeros`, () => {
      const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: curve });
      for (let i = 0; i < 100; i++) {
        const message = crypto.randomBytes(16);
        const raw = crypto.sign(hash, message, { key: privateKey, dsaEncoding: 'ieee-p1363' });
        assert.equal(raw.length, 2 * field);
        const der = ecdsaRawToDer(raw);
        assert.ok(crypto.verify(hash, message, { key: publicKey, dsaEncoding: 'der' }, der));
        const nodeDer = crypto.sign(hash, message, { key: privateKey, dsaEncoding: 'der' });
        const back = ecdsaDerToRaw(nodeDer, field)!;
        assert.ok(crypto.verify(hash, message, { key: publicKey, dsaEncoding: 'ieee-p1363' }, back));
        assert.deepEqual(ecdsaDerToRaw(der, field), raw);
      }
    });
  }

  it('rejects malformed DER: wrong tags, trailing bytes, negative or non-minimal integers, oversize integers, bad lengths', () => {
    const good = ecdsaRawToDer(Buffer.concat([Buffer.alloc(31, 1), Buffer.from([2]), Buffer.alloc(32, 3)]));
    assert.ok(ecdsaDerToRaw(good, 32));
    for (const bad of [
      Buffer.alloc(0),
      Buffer.from('3100', 'hex'),
      Buffer.concat([good, Buffer.from([0])]),
      good.subarray(0, good.length - 1),
      Buffer.from('3006020180020101', 'hex'), // r negative
      Buffer.from('300702020001020101', 'hex'), // r not minimal
      Buffer.from('30060201010201', 'hex'), // truncated s
      Buffer.from('3081060201010201ff', 'hex'), // long form for a short length
    ]) {
      assert.equal(ecdsaDerToRaw(bad, 32), undefined, bad.toString('hex'));
    }
    assert.equal(ecdsaDerToRaw(ecdsaRawToDer(Buffer.alloc(66, 0x7f)), 32), undefined, 'integers longer than the field');
  });

  it('unwraps CKA_EC_POINT from its OCTET STRING, and passes a bare point through', () => {
    const point = Buffer.concat([Buffer.from([4]), crypto.randomBytes(64)]);
    assert.deepEqual(unwrapEcPoint(Buffer.concat([Buffer.from([0x04, 65]), point])), point);
    assert.deepEqual(unwrapEcPoint(point), point);
    const big = Buffer.concat([Buffer.from([4]), crypto.randomBytes(132)]);
    assert.deepEqual(unwrapEcPoint(Buffer.concat([Buffer.from([0x04, 0x81, 133]), big])), big);
  });
});
