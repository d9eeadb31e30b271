import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { decodeOaep, mgf1, OAEP_HASH_BYTES, type OaepHash } from '../../../src/hsm/rsa-oaep';

const NODE_HASH = { SHA1: 'sha1', SHA256: 'sha256' } as const;

/**
 * An EME-OAEP block (RFC 8017 §7.1.1 step 2) with every part under the test's control, so that each
 * way a block can be wrong is made on purpose. It is checked against node:crypto's decoder first
 * (below), so the corruptions are corruptions of a real encoding.
 */
function encode(k: number, hash: OaepHash, message: Buffer, parts: { label?: string; first?: number; ps?: Buffer; separator?: number } = {}): Buffer {
  const hLen = OAEP_HASH_BYTES[hash];
  const lHash = crypto.createHash(NODE_HASH[hash]).update(parts.label ?? '').digest();
  const ps = parts.ps ?? Buffer.alloc(k - message.length - 2 * hLen - 2);
  const db = Buffer.concat([lHash, ps, Buffer.from([parts.separator ?? 0x01]), message]);
  assert.equal(db.length, k - hLen - 1, 'test encoder: the parts do not fill the block');
  const seed = crypto.randomBytes(hLen);
  const maskedDb = xor(db, mgf1(seed, db.length, hash));
  const maskedSeed = xor(seed, mgf1(maskedDb, hLen, hash));
  return Buffer.concat([Buffer.from([parts.first ?? 0]), maskedSeed, maskedDb]);
}

const xor = (a: Buffer, b: Buffer) => Buffer.from(a.map((x, i) => x ^ b[i]));

/** The block the HSM gives back for a ciphertext: m = c^d mod n, all k bytes (CKM_RSA_X_509). */
const rawDecrypt = (key: crypto.KeyObject, ct: Buffer) => crypto.privateDecrypt({ key, padding: crypto.constants.RSA_NO_PADDING }, ct);

describe('RSAES-OAEP decoding of an exponentiated block (rsa-oaep.ts)', function () {
  this.timeout(30000); // RSA-4096 generation
  const keys = new Map<number, crypto.KeyPairKeyObjectResult>();
  before(async () => {
    await Promise.all(
      [2048, 3072, 4096].map(async (bits) => {
        keys.set(bits, await new Promise<crypto.KeyPairKeyObjectResult>((resolve, reject) =>
          crypto.generateKeyPair('rsa', { modulusLength: bits }, (err, publicKey, privateKey) => (err ? reject(err) : resolve({ publicKey, privateKey }))),
        ));
      }),
    );
  });

  for (const bits of [2048, 3072, 4096]) {
    it(`RSA-${bits}: decodes what node:crypto encrypts with OAEP-SHA-256 and OAEP-SHA-1, every message length from 0 up to the limit`, () => {
      const { publicKey, privateKey } = keys.get(bits)!;
      const k = bits / 8;
      for (const hash of ['SHA256', 'SHA1'] as const) {
        const limit = k - 2 * OAEP_HASH_BYTES[hash] - 2;
        for (const length of [0, 1, 2, 31, 32, 33, limit - 1, limit]) {
          // Zeros and ones in the message: the separator is the first 0x01 after the padding, not the last.
          const message = Buffer.concat([Buffer.from([0, 1, 0, 1]), crypto.randomBytes(length)]).subarray(0, length);
          const ct = crypto.publicEncrypt({ key: publicKey, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: NODE_HASH[hash] }, message);
          const em = rawDecrypt(privateKey, ct);
          assert.equal(em.length, k);
          assert.deepEqual(decodeOaep(em, hash), message, `${hash}, ${length} bytes`);
        }
      }
    });
  }

  it('the test encoder makes blocks node:crypto decodes (so its corruptions below are of real encodings)', () => {
    const { publicKey, privateKey } = keys.get(2048)!;
    for (const hash of ['SHA256', 'SHA1'] as const) {
      const message = Buffer.from('a message');
      const ct = crypto.publicEncrypt({ key: publicKey, padding: crypto.constants.RSA_NO_PADDING }, encode(256, hash, message));
      assert.deepEqual(crypto.privateDecrypt({ key: privateKey, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: NODE_HASH[hash] }, ct), message);
    }
  });

  it('every kind of bad block fails, and all fail alike (undefined)', () => {
    const k = 256;
    const m = Buffer.from('attack at dawn');
    const psLength = k - m.length - 2 * 32 - 2;
    const withPs = (at: number, value: number) => {
      const ps = Buffer.alloc(psLength);
      ps[at] = value;
      return ps;
    };
    const bad: Record<string, Buffer> = {
      'first byte 0x01': encode(k, 'SHA256', m, { first: 0x01 }),
      'first byte 0x80': encode(k, 'SHA256', m, { first: 0x80 }),
      'first byte 0xff': encode(k, 'SHA256', m, { first: 0xff }),
      'a label (lHash mismatch)': encode(k, 'SHA256', m, { label: 'x' }),
      'encoded with SHA-1': encode(k, 'SHA1', m),
      'separator 0x00 and no 0x01 after it': encode(k, 'SHA256', Buffer.alloc(m.length), { separator: 0x00 }),
      'separator 0x02': encode(k, 'SHA256', m, { separator: 0x02 }),
      'separator 0xff': encode(k, 'SHA256', m, { separator: 0xff }),
      'separator 0x81 (odd, high bit)': encode(k, 'SHA256', m, { separator: 0x81 }),
      'a non-zero byte first in the padding': encode(k, 'SHA256', m, { ps: withPs(0, 0x02) }),
      'a non-zero byte last in the padding': encode(k, 'SHA256', m, { ps: withPs(psLength - 1, 0x80) }),
      'all zeros': Buffer.alloc(k),
      'random bytes': crypto.randomBytes(k),
      'shorter than 2·hLen + 2': encode(k, 'SHA256', m).subarray(0, 2 * 32 + 1),
    };
    for (const [what, block] of Object.entries(bad)) assert.equal(decodeOaep(block, 'SHA256'), undefined, what);
    assert.equal(decodeOaep(encode(k, 'SHA256', m), 'SHA1'), undefined, 'a SHA-256 block read as SHA-1');
    assert.deepEqual(decodeOaep(encode(k, 'SHA256', m), 'SHA256'), m, 'and the same block unharmed decodes');
  });

  it('a flipped bit anywhere in the ciphertext or the block fails', () => {
    const { publicKey, privateKey } = keys.get(2048)!;
    const ct = crypto.publicEncrypt({ key: publicKey, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, Buffer.from('m'));
    const em = rawDecrypt(privateKey, ct);
    for (const at of [0, 1, 20, 32, 33, 100, 200, 255]) {
      const flippedCt = Buffer.from(ct);
      flippedCt[at] ^= 0x01;
      // A flipped ciphertext may exceed the modulus; node's raw decryption then refuses, which is a failure too.
      let block: Buffer | undefined;
      try {
        block = rawDecrypt(privateKey, flippedCt);
      } catch {
        block = undefined;
      }
      if (block) assert.equal(decodeOaep(block, 'SHA256'), undefined, `ciphertext byte ${at}`);
      const flippedEm = Buffer.from(em);
      flippedEm[at] ^= 0x40;
      assert.equal(decodeOaep(flippedEm, 'SHA256'), undefined, `block byte ${at}`);
    }
  });

  it('MGF1 matches RFC 8017 as node:crypto uses it (via the SHA-1 and SHA-256 round trips) and cuts to any length', () => {
    assert.equal(mgf1(Buffer.from('seed'), 0, 'SHA256').length, 0);
    assert.equal(mgf1(Buffer.from('seed'), 33, 'SHA256').length, 33);
    assert.deepEqual(mgf1(Buffer.from('seed'), 33, 'SHA256').subarray(0, 32), crypto.createHash('sha256').update('seed').update(Buffer.alloc(4)).digest());
  });
});
