import crypto from 'node:crypto';

/**
 * EME-OAEP decoding (RFC 8017 §7.1.2 step 3) of a block the HSM has already exponentiated with the
 * private key (CKM_RSA_X_509): for tokens whose CKM_RSA_PKCS_OAEP lacks a hash (SoftHSM2 has SHA-1
 * only), the private key stays in the HSM and only the padding is checked here. MGF1 uses the same
 * hash as the label, and the label is empty, as AWS KMS's RSAES_OAEP_* (kms-protocol.md §6).
 *
 * Constant time (Manger's attack, docs/crypto.md "RSAES_OAEP_SHA_256 without native OAEP"): every
 * check — the leading zero byte, the label hash, the 0x01 separator after the zero padding — runs
 * over the whole block whatever the data, folded into integer masks with no early exit and no
 * branch on a secret byte; the one branch is on the combined verdict, after all the work, and
 * every failure is the same `undefined`. The hashes (MGF1, lHash) run over lengths fixed by the
 * modulus. Where the message starts is found by a masked select, not a search that stops.
 */

export type OaepHash = 'SHA1' | 'SHA256';

/** Output length of each hash, bytes. */
export const OAEP_HASH_BYTES: Readonly<Record<OaepHash, number>> = { SHA1: 20, SHA256: 32 };

const NODE_HASH: Readonly<Record<OaepHash, string>> = { SHA1: 'sha1', SHA256: 'sha256' };

/** lHash of the empty label, per hash (RFC 8017 §7.1.1 step 2a): public constants. */
const EMPTY_LABEL_HASH: Readonly<Record<OaepHash, Buffer>> = {
  SHA1: crypto.createHash('sha1').digest(),
  SHA256: crypto.createHash('sha256').digest(),
};

/**
 * The message inside an OAEP-encoded block `em` (as long as the modulus, leading zero included), or
 * undefined when the block is not a valid encoding with this hash and the empty label. The caller
 * wipes `em` afterwards; the returned Buffer is a copy.
 */
export function decodeOaep(em: Buffer, hash: OaepHash): Buffer | undefined {
  const hLen = OAEP_HASH_BYTES[hash];
  const k = em.length;
  // Public: the modulus length alone decides it.
  if (k < 2 * hLen + 2) return undefined;
  const maskedSeed = em.subarray(1, 1 + hLen);
  const maskedDb = em.subarray(1 + hLen);
  const seed = xor(maskedSeed, mgf1(maskedDb, hLen, hash));
  const db = xor(maskedDb, mgf1(seed, k - hLen - 1, hash));
  try {
    // bad: 0 while every check holds, -1 (all ones) as soon as one fails; never branched on until the end.
    let bad = nonZeroMask(em[0]);
    const lHash = EMPTY_LABEL_HASH[hash];
    let diff = 0;
    for (let i = 0; i < hLen; i++) diff |= db[i] ^ lHash[i];
    bad |= nonZeroMask(diff);
    // After lHash: zero bytes (PS), then 0x01, then the message. `looking` stays all ones until the
    // first non-zero byte; that byte must be 0x01 and its index is taken by a masked select.
    let looking = -1;
    let separator = 0;
    for (let i = hLen; i < db.length; i++) {
      const isOne = zeroMask(db[i] ^ 0x01);
      const isZero = zeroMask(db[i]);
      separator = select(looking & isOne, i, separator);
      bad |= looking & ~isOne & ~isZero;
      looking &= ~isOne;
    }
    bad |= looking; // no 0x01 at all
    if (bad !== 0) return undefined;
    return Buffer.from(db.subarray(separator + 1));
  } finally {
    seed.fill(0);
    db.fill(0);
  }
}

/** MGF1 (RFC 8017 §B.2.1): the hash of seed ‖ counter, for counter 0, 1, …, cut to `length` bytes. */
export function mgf1(seed: Buffer, length: number, hash: OaepHash): Buffer {
  const hLen = OAEP_HASH_BYTES[hash];
  const out = Buffer.alloc(Math.ceil(length / hLen) * hLen);
  const counter = Buffer.alloc(4);
  for (let i = 0; i * hLen < length; i++) {
    counter.writeUInt32BE(i);
    crypto.createHash(NODE_HASH[hash]).update(seed).update(counter).digest().copy(out, i * hLen);
  }
  return out.subarray(0, length);
}

function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.alloc(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] ^ b[i];
  return out;
}

/** -1 (all ones) when x (a byte, 0..255) is 0, else 0: arithmetic (the sign bit of x − 1), no comparison. */
function zeroMask(x: number): number {
  return (x - 1) >> 31;
}

/** -1 when x (a byte) is not 0, else 0. */
function nonZeroMask(x: number): number {
  return ~zeroMask(x);
}

/** a where mask is all ones, b where it is 0. */
function select(mask: number, a: number, b: number): number {
  return (a & mask) | (b & ~mask);
}
