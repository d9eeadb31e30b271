import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import type { Hsm } from '../../src/hsm/hsm';
import { HsmError } from '../../src/hsm/hsm-error';

/**
 * One behaviour suite for every Hsm implementation: FakeHsm in unit tests, Pkcs11Hsm over SoftHSM2
 * in integration tests. `getHsm` is called inside the tests, after the caller's before hooks.
 */
export function hsmContract(name: string, getHsm: () => Hsm): void {
  describe(`Hsm contract: ${name}`, () => {
    const label = (s: string) => `contract/${crypto.randomUUID()}/${s}`;

    it('wraps a data key under a KEK with KWP and unwraps it back (lengths 8..1024)', async () => {
      const hsm = getHsm();
      const kek = label('kek');
      await hsm.generateKek(kek);
      for (const n of [8, 16, 32, 64, 1024]) {
        const { plaintext, wrapped } = await hsm.generateWrappedDataKey(kek, n, { mechanism: 'AES_KWP' });
        assert.equal(plaintext.length, n);
        assert.equal(wrapped.length, Math.ceil(n / 8) * 8 + 8);
        assert.deepEqual(await hsm.unwrapDataKey(kek, wrapped), plaintext);
      }
    });

    it('HMAC-signs with a MAC key and verifies; a changed byte does not verify', async () => {
      const hsm = getHsm();
      const mac = label('mac');
      await hsm.generateMacKey(mac);
      const data = Buffer.from('header||context||wrapped');
      const tag = await hsm.hmacSign(mac, data);
      assert.equal(tag.length, 32);
      assert.equal(await hsm.hmacVerify(mac, data, tag), true);
      assert.equal(await hsm.hmacVerify(mac, Buffer.from('header||context||wrappeD'), tag), false);
    });

    it('AES-GCM encrypts with a 128-bit tag and rejects a wrong AAD as integrity', async () => {
      const hsm = getHsm();
      const kek = label('kek');
      await hsm.generateKek(kek);
      const { iv, ciphertextAndTag: out } = await hsm.encryptAesGcm(kek, Buffer.from('seventeen bytes!!'), Buffer.from('aad'));
      assert.equal(iv.length, 12);
      assert.equal(out.length, 17 + 16);
      assert.notDeepEqual((await hsm.encryptAesGcm(kek, Buffer.from('seventeen bytes!!'), Buffer.from('aad'))).iv, iv, 'a fresh IV per call');
      assert.deepEqual(await hsm.decryptAesGcm(kek, out, iv, Buffer.from('aad')), Buffer.from('seventeen bytes!!'));
      await assert.rejects(hsm.decryptAesGcm(kek, out, iv, Buffer.from('AAD')), (e: unknown) => e instanceof HsmError && e.kind === 'integrity');
    });

    it('answers HsmError kind key for a destroyed key, and lists labels by prefix', async () => {
      const hsm = getHsm();
      const prefix = label('');
      await hsm.generateKek(`${prefix}a`);
      await hsm.generateMacKey(`${prefix}b`);
      assert.deepEqual((await hsm.listKeyLabels(prefix)).sort(), [`${prefix}a`, `${prefix}b`]);
      await hsm.destroyKey(`${prefix}a`);
      assert.deepEqual(await hsm.listKeyLabels(prefix), [`${prefix}b`]);
      await assert.rejects(hsm.generateWrappedDataKey(`${prefix}a`, 32, { mechanism: 'AES_KWP' }), (e: unknown) => e instanceof HsmError && e.kind === 'key');
    });

    it('returns random bytes of the asked length and reports health', async () => {
      const hsm = getHsm();
      const [a, b] = [await hsm.randomBytes(32), await hsm.randomBytes(32)];
      assert.equal(a.length, 32);
      assert.notDeepEqual(a, b);
      assert.equal((await hsm.health()).isUp, true);
    });
  });
}
