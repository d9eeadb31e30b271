import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import type { Hsm, KeyPairSpec, ObjectRef, SigningScheme } from '../../src/hsm/hsm';
import { HsmError } from '../../src/hsm/hsm-error';

/**
 * One behaviour suite for every Hsm implementation: FakeHsm in unit tests, Pkcs11Hsm over SoftHSM2
 * and HsmThread (the same over its own thread) in integration tests. `getHsm` is called inside the
 * tests, after the caller's before hooks. Signatures, public keys and shared secrets are checked
 * against node:crypto, so no implementation passes by agreeing only with itself.
 */
export function hsmContract(name: string, getHsm: () => Hsm): void {
  describe(`Hsm contract: ${name}`, () => {
    /** A new object reference: a random id, as key material gets, and a label under a prefix of its own. */
    const label = (s: string, prefix = `contract/${crypto.randomUUID()}/`): ObjectRef => ({ id: crypto.randomBytes(16).toString('hex'), label: `${prefix}${s}` });
    const pairLabels = () => {
      const base = label('pair');
      return { private: base, public: label('pair.pub', base.label.replace(/pair$/, '')) };
    };
    const spki = (der: Buffer) => crypto.createPublicKey({ key: der, format: 'der', type: 'spki' });

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

    it('finds objects by id, never by label: answers HsmError kind key for a destroyed key, and lists objects by label prefix', async () => {
      const hsm = getHsm();
      const prefix = `contract/${crypto.randomUUID()}/`;
      const [a, b] = [label('a', prefix), label('b', prefix)];
      await hsm.generateKek(a);
      await hsm.generateMacKey(b);
      const byLabel = (refs: ObjectRef[]) => [...refs].sort((x, y) => x.label.localeCompare(y.label));
      assert.deepEqual(byLabel(await hsm.listKeyObjects(prefix)), [a, b]);
      assert.equal(await hsm.countObjects(a), 1);
      // Another object with a's label but its own id is not a: lookups go by id.
      const sameLabel = { id: crypto.randomBytes(16).toString('hex'), label: a.label };
      await hsm.generateKek(sameLabel);
      const { wrapped } = await hsm.generateWrappedDataKey(a, 32, { mechanism: 'AES_KWP' });
      await assert.rejects(hsm.unwrapDataKey(sameLabel, wrapped), (e: unknown) => e instanceof HsmError && e.kind === 'integrity');
      assert.equal(await hsm.destroyKey(a), 1);
      assert.equal(await hsm.destroyKey(a), 0, 'destroying what is gone is not an error');
      assert.deepEqual(byLabel(await hsm.listKeyObjects(prefix)), byLabel([b, sameLabel]));
      await assert.rejects(hsm.generateWrappedDataKey(a, 32, { mechanism: 'AES_KWP' }), (e: unknown) => e instanceof HsmError && e.kind === 'key');
      assert.equal(await hsm.countObjects(a), 0);
    });

    it('generates key pairs and gives their public keys as SPKI DER: RSA, EC on each curve, Ed25519', async () => {
      const hsm = getHsm();
      const cases: Array<[KeyPairSpec, (k: crypto.KeyObject) => boolean]> = [
        [{ family: 'RSA', bits: 2048 }, (k) => k.asymmetricKeyType === 'rsa' && k.asymmetricKeyDetails?.modulusLength === 2048],
        [{ family: 'EC', curve: 'P-256' }, (k) => k.asymmetricKeyDetails?.namedCurve === 'prime256v1'],
        [{ family: 'EC', curve: 'P-384' }, (k) => k.asymmetricKeyDetails?.namedCurve === 'secp384r1'],
        [{ family: 'EC', curve: 'P-521' }, (k) => k.asymmetricKeyDetails?.namedCurve === 'secp521r1'],
        [{ family: 'EC', curve: 'secp256k1' }, (k) => k.asymmetricKeyDetails?.namedCurve === 'secp256k1'],
        [{ family: 'EDWARDS', curve: 'Ed25519' }, (k) => k.asymmetricKeyType === 'ed25519'],
      ];
      for (const [spec, isRight] of cases) {
        const labels = pairLabels();
        await hsm.generateKeyPair(labels, spec, 'SIGN_VERIFY');
        assert.ok(isRight(spki(await hsm.publicKey(labels.public))), JSON.stringify(spec));
      }
    });

    it('signs digests as node:crypto verifies them, and verifies node:crypto signatures; a bad or malformed one is false', async () => {
      const hsm = getHsm();
      const message = Buffer.from('the message that was hashed');
      const rsa = pairLabels();
      await hsm.generateKeyPair(rsa, { family: 'RSA', bits: 2048 }, 'SIGN_VERIFY');
      const cases: Array<[{ private: ObjectRef; public: ObjectRef } | KeyPairSpec, SigningScheme, object]> = [
        [{ family: 'EC', curve: 'P-256' }, { scheme: 'ECDSA', hash: 'SHA256' }, { dsaEncoding: 'der' }],
        [{ family: 'EC', curve: 'P-384' }, { scheme: 'ECDSA', hash: 'SHA384' }, { dsaEncoding: 'der' }],
        [{ family: 'EC', curve: 'P-521' }, { scheme: 'ECDSA', hash: 'SHA512' }, { dsaEncoding: 'der' }],
        [rsa, { scheme: 'RSA_PSS', hash: 'SHA256' }, { padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }],
        [rsa, { scheme: 'RSA_PKCS1', hash: 'SHA384' }, { padding: crypto.constants.RSA_PKCS1_PADDING }],
        [{ family: 'EDWARDS', curve: 'Ed25519' }, { scheme: 'EDDSA', hash: 'SHA512' }, {}],
      ];
      for (const [pair, scheme, options] of cases) {
        const labels = 'family' in pair ? pairLabels() : pair;
        if ('family' in pair) await hsm.generateKeyPair(labels, pair, 'SIGN_VERIFY');
        const publicKey = { key: spki(await hsm.publicKey(labels.public)), ...options };
        // Pure Ed25519 signs the message itself (hsm.ts SigningScheme).
        const algorithm = scheme.scheme === 'EDDSA' ? null : scheme.hash.toLowerCase();
        const digest = algorithm ? crypto.createHash(algorithm).update(message).digest() : message;
        const what = `${scheme.scheme} ${scheme.hash}`;
        const signature = await hsm.signDigest(labels.private, scheme, digest);
        assert.equal(crypto.verify(algorithm, message, publicKey, signature), true, `${what}: node:crypto verifies the signature`);
        assert.equal(await hsm.verifyDigest(labels.public, scheme, digest, signature), true, what);
        const flipped = Buffer.from(signature);
        flipped[flipped.length >> 1] ^= 1;
        assert.equal(await hsm.verifyDigest(labels.public, scheme, digest, flipped), false, `${what}: a changed signature`);
        assert.equal(await hsm.verifyDigest(labels.public, scheme, digest, signature.subarray(0, 10)), false, `${what}: a malformed signature`);
        if (scheme.scheme === 'EDDSA') continue; // node:crypto has no private key here to sign with
        const otherDigest = crypto.createHash(algorithm!).update('another message').digest();
        assert.equal(await hsm.verifyDigest(labels.public, scheme, otherDigest, signature), false, `${what}: another digest`);
      }
    });

    it('derives the ECDH shared secret that the peer derives', async () => {
      const hsm = getHsm();
      const labels = pairLabels();
      await hsm.generateKeyPair(labels, { family: 'EC', curve: 'P-256' }, 'KEY_AGREEMENT');
      const peer = crypto.createECDH('prime256v1');
      peer.generateKeys();
      const ours = spki(await hsm.publicKey(labels.public)).export({ format: 'jwk' });
      const ourPoint = Buffer.concat([Buffer.from([4]), Buffer.from(ours.x!, 'base64url'), Buffer.from(ours.y!, 'base64url')]);
      const secret = await hsm.deriveSharedSecret(labels.private, peer.getPublicKey());
      assert.equal(secret.length, 32);
      assert.deepEqual(secret, peer.computeSecret(ourPoint));
    });

    it('generates data key pairs: a PKCS#8 private key and the SPKI public key that belongs to it', async () => {
      const hsm = getHsm();
      for (const spec of [{ family: 'EC', curve: 'P-256' }, { family: 'EDWARDS', curve: 'Ed25519' }] as KeyPairSpec[]) {
        const { privateKey, publicKey } = await hsm.generateDataKeyPair(spec);
        const key = crypto.createPrivateKey({ key: privateKey, format: 'der', type: 'pkcs8' });
        assert.deepEqual(crypto.createPublicKey(key).export({ type: 'spki', format: 'der' }), publicKey, JSON.stringify(spec));
        const algorithm = spec.family === 'EDWARDS' ? null : 'sha256';
        assert.equal(crypto.verify(algorithm, Buffer.from('m'), spki(publicKey), crypto.sign(algorithm, Buffer.from('m'), key)), true);
      }
    });

    it('RSAES-OAEP (SHA-1): decrypts its own and node:crypto ciphertexts; a changed one is integrity', async () => {
      const hsm = getHsm();
      const labels = pairLabels();
      await hsm.generateKeyPair(labels, { family: 'RSA', bits: 2048 }, 'ENCRYPT_DECRYPT');
      const plaintext = Buffer.from('a secret of some bytes');
      const ours = await hsm.rsaEncrypt(labels.public, 'SHA1', plaintext);
      assert.equal(ours.length, 256);
      assert.deepEqual(await hsm.rsaDecrypt(labels.private, 'SHA1', ours), plaintext);
      const theirs = crypto.publicEncrypt({ key: spki(await hsm.publicKey(labels.public)), padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, plaintext);
      assert.deepEqual(await hsm.rsaDecrypt(labels.private, 'SHA1', theirs), plaintext);
      const changed = Buffer.from(theirs);
      changed[100] ^= 1;
      await assert.rejects(hsm.rsaDecrypt(labels.private, 'SHA1', changed), (e: unknown) => e instanceof HsmError && e.kind === 'integrity');
    });

    it('RSAES-OAEP (SHA-256): decrypts its own and node:crypto ciphertexts; every bad ciphertext is integrity, alike', async function () {
      const hsm = getHsm();
      const how = hsm.capabilities().rsaOaepSha256;
      if (!how) return this.skip(); // the token can do neither native OAEP-SHA-256 nor raw RSA: nothing to hold it to
      const labels = pairLabels();
      await hsm.generateKeyPair(labels, { family: 'RSA', bits: 2048 }, 'ENCRYPT_DECRYPT');
      const plaintext = Buffer.from('a secret of some bytes');
      const ours = await hsm.rsaEncrypt(labels.public, 'SHA256', plaintext);
      assert.equal(ours.length, 256);
      const publicKey = spki(await hsm.publicKey(labels.public));
      const sealed = (hash: 'sha1' | 'sha256', m = plaintext) => crypto.publicEncrypt({ key: publicKey, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: hash }, m);
      assert.deepEqual(await hsm.rsaDecrypt(labels.private, 'SHA256', ours), plaintext);
      assert.deepEqual(await hsm.rsaDecrypt(labels.private, 'SHA256', sealed('sha256')), plaintext);
      const longest = crypto.randomBytes(256 - 2 * 32 - 2);
      assert.deepEqual(await hsm.rsaDecrypt(labels.private, 'SHA256', sealed('sha256', longest)), longest);
      const n = Buffer.from(publicKey.export({ format: 'jwk' }).n!, 'base64url');
      const changed = sealed('sha256');
      changed[100] ^= 1;
      const bad: Record<string, Buffer> = {
        'a changed byte': changed,
        'SHA-1 OAEP': sealed('sha1'),
        'one byte short': sealed('sha256').subarray(1),
        'one byte long': Buffer.concat([Buffer.alloc(1), sealed('sha256')]),
        'the modulus itself (c ≥ n)': n,
        'all ones (c > n)': Buffer.alloc(256, 0xff),
        zero: Buffer.alloc(256),
        'raw RSA of a block with a non-zero first byte': crypto.publicEncrypt({ key: publicKey, padding: crypto.constants.RSA_NO_PADDING }, Buffer.concat([Buffer.from([1]), crypto.randomBytes(255)])),
      };
      for (const [what, ct] of Object.entries(bad)) {
        await assert.rejects(hsm.rsaDecrypt(labels.private, 'SHA256', ct), (e: unknown) => e instanceof HsmError && e.kind === 'integrity' && e.fn === 'C_Decrypt', `${what} (${how})`);
      }
      assert.deepEqual(await hsm.rsaDecrypt(labels.private, 'SHA1', sealed('sha1')), plaintext, 'SHA-1 still works on the same key');
    });

    it('HMAC with a SHA-384 key of 48 bytes: 48-byte tags that verify, and a short or wrong one does not', async () => {
      const hsm = getHsm();
      const mac = label('mac384');
      await hsm.generateMacKey(mac, { hash: 'SHA384', bytes: 48 });
      const tag = await hsm.hmacSign(mac, Buffer.from('data'), 'SHA384');
      assert.equal(tag.length, 48);
      assert.equal(await hsm.hmacVerify(mac, Buffer.from('data'), tag, 'SHA384'), true);
      assert.equal(await hsm.hmacVerify(mac, Buffer.from('datA'), tag, 'SHA384'), false);
      assert.equal(await hsm.hmacVerify(mac, Buffer.from('data'), tag.subarray(0, 32), 'SHA384'), false);
    });

    it('wraps a data key with AES-GCM and the AAD, which decryptAesGcm opens (where the token can wrap with GCM)', async function () {
      const hsm = getHsm();
      const kek = label('kek');
      await hsm.generateKek(kek);
      const aad = Buffer.from('header||context');
      let wrapped;
      try {
        wrapped = await hsm.generateWrappedDataKey(kek, 32, { mechanism: 'AES_GCM', aad });
      } catch (err) {
        if (!(err instanceof HsmError && err.ckr === 'CKR_MECHANISM_INVALID')) throw err;
        console.log(`      (skipped: ${name} cannot wrap with CKM_AES_GCM, as SoftHSM2 2.6.1; QKMS_DATA_KEY_WRAP=AES_KWP_HMAC)`);
        return this.skip();
      }
      assert.equal(wrapped.iv?.length, 12);
      assert.equal(wrapped.wrapped.length, 32 + 16);
      assert.deepEqual(await hsm.decryptAesGcm(kek, wrapped.wrapped, wrapped.iv!, aad), wrapped.plaintext);
      await assert.rejects(hsm.decryptAesGcm(kek, wrapped.wrapped, wrapped.iv!, Buffer.from('other')), (e: unknown) => e instanceof HsmError && e.kind === 'integrity');
    });

    it('makes a data key from its RNG encrypted with AES-GCM and the AAD (AES_GCM_ENCRYPT), which decryptAesGcm opens; another AAD is integrity', async () => {
      const hsm = getHsm();
      const kek = label('kek');
      await hsm.generateKek(kek);
      const aad = Buffer.from('header||context');
      const keys = new Set<string>();
      for (const n of [1, 32, 1024]) {
        const sealed = await hsm.generateWrappedDataKey(kek, n, { mechanism: 'AES_GCM_ENCRYPT', aad });
        assert.equal(sealed.plaintext.length, n);
        assert.equal(sealed.iv?.length, 12);
        assert.equal(sealed.wrapped.length, n + 16);
        assert.deepEqual(await hsm.decryptAesGcm(kek, sealed.wrapped, sealed.iv!, aad), sealed.plaintext);
        await assert.rejects(hsm.decryptAesGcm(kek, sealed.wrapped, sealed.iv!, Buffer.from('other')), (e: unknown) => e instanceof HsmError && e.kind === 'integrity');
        keys.add(sealed.plaintext.toString('hex'));
        keys.add(sealed.iv!.toString('hex'));
      }
      assert.equal(keys.size, 6, 'a key or IV came out twice');
      await hsm.destroyKey(kek);
    });

    it('reports what the token says of its objects: secret keys protected, classes and types, nothing for an unknown label', async () => {
      const hsm = getHsm();
      const [kek, mac, pair] = [label('kek'), label('mac'), pairLabels()];
      await hsm.generateKek(kek);
      await hsm.generateMacKey(mac);
      await hsm.generateKeyPair(pair, { family: 'EC', curve: 'P-256' }, 'SIGN_VERIFY');
      const facts = async (l: ObjectRef) => {
        const found = await hsm.inspectKeyObjects(l);
        assert.equal(found.length, 1, l.label);
        assert.deepEqual([found[0].label, found[0].id], [l.label, l.id]);
        return found[0];
      };
      for (const [l, objectClass, keyType] of [[kek, 'CKO_SECRET_KEY', 'CKK_AES'], [mac, 'CKO_SECRET_KEY', 'CKK_GENERIC_SECRET'], [pair.private, 'CKO_PRIVATE_KEY', 'CKK_EC'], [pair.public, 'CKO_PUBLIC_KEY', 'CKK_EC']] as const) {
        const f = await facts(l);
        assert.deepEqual([f.objectClass, f.keyType], [objectClass, keyType], l.label);
        assert.equal(f.flags.CKA_TOKEN, true, l.label);
        if (objectClass !== 'CKO_PUBLIC_KEY') {
          assert.equal(f.flags.CKA_SENSITIVE, true, l.label);
          assert.equal(f.flags.CKA_EXTRACTABLE, false, l.label);
          assert.equal(f.flags.CKA_NEVER_EXTRACTABLE, true, l.label);
        }
      }
      assert.deepEqual(await hsm.inspectKeyObjects(label('never-made')), []);
    });

    it('reports its stats from memory: up, no negative gauges', async () => {
      const hsm = getHsm();
      await hsm.randomBytes(1);
      const stats = hsm.stats();
      assert.equal(stats.isUp, true);
      assert.ok(stats.queuedCalls >= 0 && stats.sessions.inUse >= 0 && stats.sessions.waiters >= 0 && stats.sessions.size >= stats.sessions.inUse);
      assert.equal(typeof stats.pkcs11, 'object');
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
