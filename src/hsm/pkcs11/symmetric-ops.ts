import crypto from 'node:crypto';
import * as pkcs11js from 'pkcs11js';
import type { DataKeyWrap, Hash, HmacKeySpec, ObjectRef, WrappedDataKey } from '../hsm';
import { GCM_IV_BYTES, GCM_TAG_BYTES } from '../hsm';
import { HsmError } from '../hsm-error';
import { withCleanup } from './instrumented-module';
import { AES_KEY_GEN, aesGcm, GENERIC_SECRET_KEY_GEN, HMAC_BY_HASH } from './mechanisms';
import type { OperationContext } from './operation-context';
import { ephemeralDataKeyTemplate, kekTemplate, macKeyTemplate } from './templates';
import type { Session } from './token-access';

/** Secret-key work: KEKs and MAC keys, data keys wrapped and unwrapped, AES-GCM and AES-CBC, HMAC, random bytes. */
export class SymmetricOps {
  constructor(private readonly ctx: OperationContext) {}

  private get templateOptions() {
    return { allowedMechanisms: this.ctx.capabilities.allowedMechanismsAttribute };
  }

  /** RFC 5649 under the mechanism number the token gets right (capability discovery); none is the token's limit. */
  private get kwp(): pkcs11js.Mechanism {
    const mechanism = this.ctx.capabilities.kwpMechanism;
    if (mechanism === undefined) throw new HsmError('unsupported', 'C_WrapKey', 'CKR_MECHANISM_INVALID', { cause: new Error('the token has no exact RFC 5649 key wrap') });
    return { mechanism };
  }

  async generateKek(ref: ObjectRef): Promise<void> {
    const { p11, connection, objects } = this.ctx;
    await connection.creating('C_GenerateKey', (s) => objects.remember(ref, p11.C_GenerateKey(s, AES_KEY_GEN, kekTemplate(ref, this.templateOptions))));
  }

  async generateMacKey(ref: ObjectRef, spec: HmacKeySpec = { hash: 'SHA256', bytes: 32 }): Promise<void> {
    const { p11, connection, objects } = this.ctx;
    const template = macKeyTemplate(ref, spec.bytes, hmacMechanism(spec.hash).mechanism, this.templateOptions);
    await connection.creating('C_GenerateKey', (s) => objects.remember(ref, p11.C_GenerateKey(s, GENERIC_SECRET_KEY_GEN, template)));
  }

  async generateWrappedDataKey(kekRef: ObjectRef, lengthBytes: number, wrap: DataKeyWrap): Promise<WrappedDataKey> {
    const { p11, connection } = this.ctx;
    if (wrap.mechanism === 'AES_GCM_ENCRYPT') return this.generateEncryptedDataKey(kekRef, lengthBytes, wrap.aad);
    return this.ctx.objects.withKey(kekRef, 'C_WrapKey', (s, kek) => {
      const dataKey = connection.sessionObjectCreated(p11.C_GenerateKey(s, GENERIC_SECRET_KEY_GEN, ephemeralDataKeyTemplate(lengthBytes)));
      return withCleanup(
        (): WrappedDataKey => {
          const plaintext = Buffer.from(p11.C_GetAttributeValue(s, dataKey, [{ type: pkcs11js.CKA_VALUE }])[0].value);
          const out = Buffer.alloc(lengthBytes + 16 + GCM_TAG_BYTES);
          if (wrap.mechanism === 'AES_KWP') return { plaintext, wrapped: Buffer.from(p11.C_WrapKey(s, this.kwp, kek, dataKey, out)) };
          const gcm = this.freshGcm(s, wrap.aad, 'C_WrapKey');
          const wrapped = Buffer.from(p11.C_WrapKey(s, gcm.mechanism, kek, dataKey, out));
          return { plaintext, wrapped, iv: gcm.usedIv() };
        },
        () => p11.C_DestroyObject(s, dataKey),
      );
    });
  }

  async unwrapDataKey(kekRef: ObjectRef, wrapped: Buffer): Promise<Buffer> {
    const { p11, connection } = this.ctx;
    return this.ctx.objects.withKey(kekRef, 'C_UnwrapKey', (s, kek) => {
      const dataKey = connection.sessionObjectCreated(p11.C_UnwrapKey(s, this.kwp, kek, wrapped, ephemeralDataKeyTemplate()));
      return withCleanup(
        () => Buffer.from(p11.C_GetAttributeValue(s, dataKey, [{ type: pkcs11js.CKA_VALUE }])[0].value),
        () => p11.C_DestroyObject(s, dataKey),
      );
    });
  }

  async encryptAesGcm(kekRef: ObjectRef, plaintext: Buffer, aad: Buffer): Promise<{ iv: Buffer; ciphertextAndTag: Buffer }> {
    return this.ctx.objects.withKey(kekRef, 'C_Encrypt', (s, kek) => this.gcmEncrypt(s, kek, plaintext, this.freshGcm(s, aad, 'C_Encrypt')));
  }

  /**
   * A data key from the token's RNG encrypted under the KEK with AES-GCM: three calls, the key and
   * a caller-made IV drawn by one C_GenerateRandom (docs/crypto.md "GCM encrypt").
   */
  private async generateEncryptedDataKey(kekRef: ObjectRef, lengthBytes: number, aad: Buffer): Promise<WrappedDataKey> {
    const { p11 } = this.ctx;
    return this.ctx.objects.withKey(kekRef, 'C_Encrypt', (s, kek) => {
      const ivBytes = this.ctx.options.gcmIv === 'hsm' ? 0 : GCM_IV_BYTES;
      const random = Buffer.from(p11.C_GenerateRandom(s, Buffer.alloc(lengthBytes + ivBytes)));
      const plaintext = Buffer.from(random.subarray(0, lengthBytes));
      const gcm = this.freshGcm(s, aad, 'C_Encrypt', ivBytes > 0 ? random.subarray(lengthBytes) : undefined);
      const { iv, ciphertextAndTag } = this.gcmEncrypt(s, kek, plaintext, gcm);
      return { plaintext, wrapped: ciphertextAndTag, iv };
    });
  }

  private gcmEncrypt(s: Session, kek: pkcs11js.Handle, plaintext: Buffer, gcm: { mechanism: pkcs11js.Mechanism; usedIv(): Buffer }): { iv: Buffer; ciphertextAndTag: Buffer } {
    const { p11 } = this.ctx;
    p11.C_EncryptInit(s, gcm.mechanism, kek);
    const ciphertextAndTag = Buffer.from(p11.C_Encrypt(s, plaintext, Buffer.alloc(plaintext.length + GCM_TAG_BYTES)));
    return { iv: gcm.usedIv(), ciphertextAndTag };
  }

  async decryptAesGcm(kekRef: ObjectRef, ciphertextAndTag: Buffer, iv: Buffer, aad: Buffer): Promise<Buffer> {
    const { p11 } = this.ctx;
    return this.ctx.objects.withKey(kekRef, 'C_Decrypt', (s, kek) => {
      p11.C_DecryptInit(s, aesGcm(iv, aad), kek);
      // SoftHSM2 wants room for ciphertext plus tag even though the tag is not output (§1.3).
      return Buffer.from(p11.C_Decrypt(s, ciphertextAndTag, Buffer.alloc(ciphertextAndTag.length)));
    });
  }

  async encryptAesCbc(kekRef: ObjectRef, plaintext: Buffer): Promise<{ iv: Buffer; ciphertext: Buffer }> {
    const { p11 } = this.ctx;
    return this.ctx.objects.withKey(kekRef, 'C_Encrypt', (s, kek) => {
      const iv = Buffer.from(p11.C_GenerateRandom(s, Buffer.alloc(CBC_IV_BYTES)));
      p11.C_EncryptInit(s, { mechanism: pkcs11js.CKM_AES_CBC_PAD, parameter: iv }, kek);
      return { iv, ciphertext: Buffer.from(p11.C_Encrypt(s, plaintext, Buffer.alloc(plaintext.length + CBC_IV_BYTES))) };
    });
  }

  async decryptAesCbc(kekRef: ObjectRef, iv: Buffer, ciphertext: Buffer): Promise<Buffer> {
    const { p11 } = this.ctx;
    return this.ctx.objects.withKey(kekRef, 'C_Decrypt', (s, kek) => {
      p11.C_DecryptInit(s, { mechanism: pkcs11js.CKM_AES_CBC_PAD, parameter: iv }, kek);
      return Buffer.from(p11.C_Decrypt(s, ciphertext, Buffer.alloc(ciphertext.length)));
    });
  }

  /**
   * A GCM mechanism with a fresh IV, made as the profile says: 12 bytes of C_GenerateRandom in this
   * session, or (gcmIv 'hsm') a zero-filled IV that the token overwrites with the one it chose —
   * pkcs11js hands the token a pointer to this Buffer. usedIv() refuses the output if the IV is
   * still zero: a token that does not generate IVs would otherwise encrypt everything under one IV.
   * `drawn`: random bytes the caller already drew from this token for the IV.
   */
  private freshGcm(s: Session, aad: Buffer, fn: string, drawn?: Buffer): { mechanism: pkcs11js.Mechanism; usedIv(): Buffer } {
    const fromToken = this.ctx.options.gcmIv === 'hsm';
    const iv = fromToken ? Buffer.alloc(GCM_IV_BYTES) : Buffer.from(drawn ?? this.ctx.p11.C_GenerateRandom(s, Buffer.alloc(GCM_IV_BYTES)));
    return {
      mechanism: aesGcm(iv, aad),
      usedIv: () => {
        if (fromToken && iv.every((b) => b === 0)) {
          throw new HsmError('config', fn, undefined, { cause: new Error('QKMS_HSM_PROFILE says the token generates GCM IVs, but it left the zero IV in place; output discarded') });
        }
        return Buffer.from(iv);
      },
    };
  }

  async hmacSign(macRef: ObjectRef, data: Buffer, hash: Hash = 'SHA256'): Promise<Buffer> {
    const { p11 } = this.ctx;
    const hmac = hmacMechanism(hash);
    return this.ctx.objects.withKey(macRef, 'C_Sign', (s, key) => {
      p11.C_SignInit(s, { mechanism: hmac.mechanism }, key);
      return Buffer.from(p11.C_Sign(s, data, Buffer.alloc(hmac.bytes)));
    });
  }

  /**
   * Computed with C_Sign and compared here, in constant time, never with C_Verify: a mismatch is
   * the client's doing, and C_Verify reports it with a vendor's code (NSS softoken: a stale
   * CKR_DEVICE_ERROR) that would read as a device failure. C_Sign has no "does not match" answer.
   */
  async hmacVerify(macRef: ObjectRef, data: Buffer, mac: Buffer, hash: Hash = 'SHA256'): Promise<boolean> {
    if (mac.length !== hmacMechanism(hash).bytes) return false;
    const expected = await this.hmacSign(macRef, data, hash);
    // timingSafeEqual throws on unequal lengths; the length of a MAC is no secret.
    return mac.length === expected.length && crypto.timingSafeEqual(mac, expected);
  }

  async randomBytes(length: number): Promise<Buffer> {
    const { p11 } = this.ctx;
    return this.ctx.connection.withSession('C_GenerateRandom', (s) => Buffer.from(p11.C_GenerateRandom(s, Buffer.alloc(length))));
  }
}

const CBC_IV_BYTES = 16;

export function hmacMechanism(hash: Hash): { mechanism: number; bytes: number } {
  if (hash === 'SHA1') throw new HsmError('config', 'C_SignInit', 'CKR_MECHANISM_INVALID');
  return HMAC_BY_HASH[hash];
}
