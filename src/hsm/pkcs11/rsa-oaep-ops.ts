import crypto from 'node:crypto';
import * as pkcs11js from 'pkcs11js';
import type { ObjectRef } from '../hsm';
import { HsmError } from '../hsm-error';
import { decodeOaep } from '../rsa-oaep';
import { RSA_X_509, rsaOaep } from './mechanisms';
import type { OperationContext } from './operation-context';

type OaepHash = 'SHA1' | 'SHA256';

/**
 * RSAES-OAEP (MGF1 with the same hash, empty label) with a token key pair. Where the token's
 * CKM_RSA_PKCS_OAEP does the hash, it does all of it. Where it lacks SHA-256 (SoftHSM2;
 * TokenCapabilities.rsaOaepSha256 'raw-rsa'), the private-key step stays in the HSM as raw RSA
 * (CKM_RSA_X_509) and the padding is checked here in constant time (rsa-oaep.ts); encryption, a
 * public-key operation, is node:crypto's OAEP with the token's public key. docs/crypto.md
 * "RSAES_OAEP_SHA_256 without native OAEP" gives the threat model.
 */
export class RsaOaepOps {
  constructor(
    private readonly ctx: OperationContext,
    /** The token's public key as SPKI DER (AsymmetricOps.publicKey). */
    private readonly publicKey: (ref: ObjectRef) => Promise<Buffer>,
  ) {}

  async encrypt(ref: ObjectRef, hash: OaepHash, plaintext: Buffer): Promise<Buffer> {
    if (this.isRaw(hash)) {
      const key = crypto.createPublicKey({ key: await this.publicKey(ref), format: 'der', type: 'spki' });
      return crypto.publicEncrypt({ key, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, plaintext);
    }
    const { p11 } = this.ctx;
    return this.ctx.objects.withKey(ref, 'C_Encrypt', (s, key) => {
      p11.C_EncryptInit(s, rsaOaep(hash), key);
      return Buffer.from(p11.C_Encrypt(s, plaintext, Buffer.alloc(1024)));
    });
  }

  async decrypt(ref: ObjectRef, hash: OaepHash, ciphertext: Buffer): Promise<Buffer> {
    const { p11 } = this.ctx;
    const isRaw = this.isRaw(hash);
    return this.ctx.objects.withKey(ref, 'C_Decrypt', (s, key) => {
      if (isRaw) return this.rawDecrypt(s, key, hash, ciphertext);
      p11.C_DecryptInit(s, rsaOaep(hash), key);
      return Buffer.from(p11.C_Decrypt(s, ciphertext, Buffer.alloc(1024)));
    });
  }

  /**
   * RSAES-OAEP decryption with raw RSA (CKM_RSA_X_509) and the private key `key` on session `s`,
   * the padding checked in constant time here; HsmError 'integrity', one and the same for every
   * way a ciphertext can be wrong. For the hashes the token's OAEP lacks (also BYOK's import-ops.ts).
   */
  rawDecrypt(s: pkcs11js.Handle, key: pkcs11js.Handle, hash: OaepHash, ciphertext: Buffer): Buffer {
    const { p11 } = this.ctx;
    // CKA_MODULUS is a public attribute, readable on a sensitive key.
    const modulus = stripLeadingZeros(Buffer.from(p11.C_GetAttributeValue(s, key, [{ type: pkcs11js.CKA_MODULUS }])[0].value));
    // Public checks on public values (RFC 8017 §7.1.2 steps 1 and 2a): a token answers a wrong
    // length or c ≥ n with codes that vary (SoftHSM2: CKR_GENERAL_ERROR), so they are made here.
    if (ciphertext.length !== modulus.length || Buffer.compare(ciphertext, modulus) >= 0) throw notOaep();
    p11.C_DecryptInit(s, RSA_X_509, key);
    const out = Buffer.alloc(modulus.length);
    const block = p11.C_Decrypt(s, ciphertext, out);
    const em = leftPad(block, ciphertext.length);
    try {
      const message = decodeOaep(em, hash);
      if (!message) throw notOaep();
      return message;
    } finally {
      em.fill(0);
      out.fill(0);
    }
  }

  private isRaw(hash: OaepHash): boolean {
    return hash === 'SHA256' && this.ctx.capabilities.rsaOaepSha256 === 'raw-rsa';
  }
}

/** One failure for every way a ciphertext can be wrong (Manger's attack: nothing tells them apart). */
function notOaep(): HsmError {
  return new HsmError('integrity', 'C_Decrypt', undefined, { cause: new Error('the ciphertext is not RSAES-OAEP under this key') });
}

/**
 * The raw block as k bytes: the PKCS#11 mechanism gives all k (SoftHSM2 does), a token that dropped
 * leading zeros would give fewer, and decoding reads the first byte.
 */
function leftPad(block: Buffer, k: number): Buffer {
  const em = Buffer.alloc(k);
  block.copy(em, k - Math.min(block.length, k), Math.max(0, block.length - k));
  return em;
}

function stripLeadingZeros(value: Buffer): Buffer {
  let i = 0;
  while (i < value.length - 1 && value[i] === 0) i++;
  return value.subarray(i);
}
