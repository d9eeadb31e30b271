import crypto from 'node:crypto';
import type { SigningScheme } from '../../src/hsm/hsm';

/**
 * Signatures over a digest, made and checked as a token makes them (CKM_RSA_PKCS over DigestInfo,
 * CKM_RSA_PKCS_PSS with salt = digest length, CKM_ECDSA with DER output; pure Ed25519 over the
 * message), for FakeHsm. node:crypto only signs messages (it hashes them itself), so the RSA
 * paddings are built here and ECDSA is computed with the curve arithmetic node:crypto exposes:
 * ECDH's k·G. Slow and not constant-time: for tests only.
 */
export function signDigest(key: crypto.KeyObject, scheme: SigningScheme, digest: Buffer): Buffer {
  switch (scheme.scheme) {
    case 'EDDSA':
      return crypto.sign(null, digest, key);
    case 'RSA_PKCS1':
      return crypto.privateEncrypt({ key, padding: crypto.constants.RSA_PKCS1_PADDING }, Buffer.concat([DIGEST_INFO[scheme.hash], digest]));
    case 'RSA_PSS':
      return crypto.privateEncrypt({ key, padding: crypto.constants.RSA_NO_PADDING }, pssEncode(digest, scheme.hash, key.asymmetricKeyDetails!.modulusLength!));
    case 'ECDSA':
      return ecdsaSign(key, digest);
  }
}

/** Checks with the private key the fake holds (FakeHsm keeps only that); false for anything malformed. */
export function verifyDigest(key: crypto.KeyObject, scheme: SigningScheme, digest: Buffer, signature: Buffer): boolean {
  try {
    switch (scheme.scheme) {
      case 'EDDSA':
        return crypto.verify(null, digest, key, signature);
      case 'RSA_PKCS1': {
        const opened = crypto.publicDecrypt({ key, padding: crypto.constants.RSA_PKCS1_PADDING }, signature);
        return opened.equals(Buffer.concat([DIGEST_INFO[scheme.hash], digest]));
      }
      case 'RSA_PSS':
        return pssVerify(crypto.publicDecrypt({ key, padding: crypto.constants.RSA_NO_PADDING }, signature), digest, scheme.hash, key.asymmetricKeyDetails!.modulusLength!);
      case 'ECDSA':
        return ecdsaVerify(key, digest, signature);
    }
  } catch {
    return false;
  }
}

const DIGEST_INFO: Record<SigningScheme['hash'], Buffer> = {
  SHA256: Buffer.from('3031300d060960864801650304020105000420', 'hex'),
  SHA384: Buffer.from('3041300d060960864801650304020205000430', 'hex'),
  SHA512: Buffer.from('3051300d060960864801650304020305000440', 'hex'),
};

const hashOf = (hash: SigningScheme['hash'], ...parts: Buffer[]) => crypto.createHash(hash.toLowerCase()).update(Buffer.concat(parts)).digest();

/** RFC 8017 MGF1 with the same hash. */
function mgf1(seed: Buffer, length: number, hash: SigningScheme['hash']): Buffer {
  const out: Buffer[] = [];
  for (let i = 0; out.length * seed.length < length + seed.length; i++) out.push(hashOf(hash, seed, Buffer.from([i >>> 24, (i >>> 16) & 255, (i >>> 8) & 255, i & 255])));
  return Buffer.concat(out).subarray(0, length);
}

/** RFC 8017 §9.1.1 EMSA-PSS-ENCODE (salt = digest length), left-padded to the modulus size. */
function pssEncode(mHash: Buffer, hash: SigningScheme['hash'], modBits: number): Buffer {
  const emBits = modBits - 1;
  const emLen = Math.ceil(emBits / 8);
  const salt = crypto.randomBytes(mHash.length);
  const h = hashOf(hash, Buffer.alloc(8), mHash, salt);
  const db = Buffer.concat([Buffer.alloc(emLen - salt.length - h.length - 2), Buffer.from([1]), salt]);
  const masked = Buffer.from(db.map((b, i) => b ^ mgf1(h, db.length, hash)[i]));
  masked[0] &= 0xff >>> (8 * emLen - emBits);
  const em = Buffer.concat([masked, h, Buffer.from([0xbc])]);
  return Buffer.concat([Buffer.alloc(Math.ceil(modBits / 8) - emLen), em]);
}

/** RFC 8017 §9.1.2 EMSA-PSS-VERIFY over the opened signature. */
function pssVerify(opened: Buffer, mHash: Buffer, hash: SigningScheme['hash'], modBits: number): boolean {
  const emBits = modBits - 1;
  const emLen = Math.ceil(emBits / 8);
  const em = opened.subarray(opened.length - emLen);
  if (opened.subarray(0, opened.length - emLen).some((b) => b !== 0) || em[emLen - 1] !== 0xbc) return false;
  const masked = em.subarray(0, emLen - mHash.length - 1);
  const h = em.subarray(emLen - mHash.length - 1, emLen - 1);
  if ((masked[0] & ~(0xff >>> (8 * emLen - emBits)) & 0xff) !== 0) return false;
  const mask = mgf1(h, masked.length, hash);
  const db = Buffer.from(masked.map((b, i) => b ^ mask[i]));
  db[0] &= 0xff >>> (8 * emLen - emBits);
  const psLen = emLen - 2 * mHash.length - 2;
  if (db.subarray(0, psLen).some((b) => b !== 0) || db[psLen] !== 1) return false;
  return hashOf(hash, Buffer.alloc(8), mHash, db.subarray(psLen + 1)).equals(h);
}

/** The order n of each curve's base point (SEC 2). */
const CURVE_ORDER: Record<string, bigint> = {
  prime256v1: 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n,
  secp384r1: 0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973n,
  secp521r1: 0x01fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffa51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409n,
  secp256k1: 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n,
};

const toInt = (b: Buffer) => (b.length === 0 ? 0n : BigInt(`0x${b.toString('hex')}`));
const toBytes = (n: bigint, length: number) => Buffer.from(n.toString(16).padStart(length * 2, '0'), 'hex');
const mod = (a: bigint, n: bigint) => ((a % n) + n) % n;

function modPow(base: bigint, exp: bigint, n: bigint): bigint {
  let result = 1n;
  for (let b = mod(base, n), e = exp; e > 0n; e >>= 1n, b = (b * b) % n) if (e & 1n) result = (result * b) % n;
  return result;
}

/** The curve, its order, the private scalar d, and x(k·G) mod n through ECDH (k·G is the public key of private key k). */
function curveOf(key: crypto.KeyObject) {
  const curve = key.asymmetricKeyDetails!.namedCurve!;
  const n = CURVE_ORDER[curve];
  const nBytes = Math.ceil(n.toString(16).length / 2);
  const d = toInt(Buffer.from(key.export({ format: 'jwk' }).d!, 'base64url'));
  const xOfMultiple = (k: bigint) => {
    const ecdh = crypto.createECDH(curve);
    ecdh.setPrivateKey(toBytes(k, nBytes));
    const point = ecdh.getPublicKey();
    return mod(toInt(point.subarray(1, 1 + (point.length - 1) / 2)), n);
  };
  // The digest as an integer, cut to the bit length of n (SEC 1 §4.1.3 step 5).
  const e = (digest: Buffer) => toInt(digest) >> BigInt(Math.max(0, digest.length * 8 - n.toString(2).length));
  return { n, nBytes, d, xOfMultiple, e };
}

function ecdsaSign(key: crypto.KeyObject, digest: Buffer): Buffer {
  const { n, nBytes, d, xOfMultiple, e } = curveOf(key);
  for (;;) {
    const k = mod(toInt(crypto.randomBytes(nBytes + 8)), n - 1n) + 1n;
    const r = xOfMultiple(k);
    const s = mod(modPow(k, n - 2n, n) * (e(digest) + r * d), n);
    if (r !== 0n && s !== 0n) return derSignature(r, s);
  }
}

/** u1·G + u2·Q = (u1 + u2·d)·G: with d at hand, one ECDH multiplication checks it. */
function ecdsaVerify(key: crypto.KeyObject, digest: Buffer, signature: Buffer): boolean {
  const { n, d, xOfMultiple, e } = curveOf(key);
  const parsed = parseDerSignature(signature);
  if (!parsed) return false;
  const { r, s } = parsed;
  if (r <= 0n || r >= n || s <= 0n || s >= n) return false;
  const w = modPow(s, n - 2n, n);
  const k = mod(e(digest) * w + r * w * d, n);
  return k !== 0n && xOfMultiple(k) === r;
}

function derInteger(v: bigint): Buffer {
  let bytes = Buffer.from(v.toString(16).padStart(2 * Math.ceil(v.toString(16).length / 2), '0'), 'hex');
  if (bytes[0] & 0x80) bytes = Buffer.concat([Buffer.from([0]), bytes]);
  return Buffer.concat([Buffer.from([0x02, bytes.length]), bytes]);
}

function derSignature(r: bigint, s: bigint): Buffer {
  const body = Buffer.concat([derInteger(r), derInteger(s)]);
  return Buffer.concat([Buffer.from(body.length < 0x80 ? [0x30, body.length] : [0x30, 0x81, body.length]), body]);
}

function parseDerSignature(sig: Buffer): { r: bigint; s: bigint } | undefined {
  if (sig[0] !== 0x30) return undefined;
  let at = sig[1] === 0x81 ? 3 : 2;
  if ((sig[1] === 0x81 ? sig[2] : sig[1]) !== sig.length - at) return undefined;
  const ints: bigint[] = [];
  for (let i = 0; i < 2; i++) {
    if (sig[at] !== 0x02 || at + 2 + sig[at + 1] > sig.length) return undefined;
    ints.push(toInt(sig.subarray(at + 2, at + 2 + sig[at + 1])));
    at += 2 + sig[at + 1];
  }
  return at === sig.length ? { r: ints[0], s: ints[1] } : undefined;
}
