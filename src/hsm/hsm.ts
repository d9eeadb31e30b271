/**
 * The device boundary in domain vocabulary: labels, Buffers and algorithm names. Sessions, handles
 * and CK_* values never cross it, so FakeHsm, FaultInjectingHsm and DeadlineHsm can stand in for
 * or wrap the PKCS#11 implementation.
 */
export interface Hsm {
  /** A token AES-256 key: sensitive, never extractable, wrap/unwrap and GCM encrypt/decrypt only. */
  generateKek(label: string): Promise<void>;
  /** A token HMAC-SHA-256 key: sensitive, never extractable, sign/verify only. */
  generateMacKey(label: string): Promise<void>;
  /**
   * A data key born in the HSM (C_GenerateKey, session object), its value read once, wrapped under
   * the KEK inside the HSM (C_WrapKey: RFC 5649, or AES-GCM with the AAD), and the object destroyed.
   */
  generateWrappedDataKey(kekLabel: string, lengthBytes: number, wrap: DataKeyWrap): Promise<WrappedDataKey>;
  /** RFC 5649 unwrap into an ephemeral object whose value is read and which is destroyed at once. */
  unwrapDataKey(kekLabel: string, wrapped: Buffer): Promise<Buffer>;
  /** AES-256-GCM with a fresh IV (made as the token's profile says: gcmIv), returned with the output. */
  encryptAesGcm(kekLabel: string, plaintext: Buffer, aad: Buffer): Promise<{ iv: Buffer; ciphertextAndTag: Buffer }>;
  /** Throws HsmError kind 'integrity' when the tag does not verify. */
  decryptAesGcm(kekLabel: string, ciphertextAndTag: Buffer, iv: Buffer, aad: Buffer): Promise<Buffer>;
  hmacSign(macLabel: string, data: Buffer): Promise<Buffer>;
  hmacVerify(macLabel: string, data: Buffer, mac: Buffer): Promise<boolean>;
  randomBytes(length: number): Promise<Buffer>;
  destroyKey(label: string): Promise<void>;
  /** Labels of the token's secret keys that start with the prefix (start-up reconciliation). */
  listKeyLabels(prefix: string): Promise<string[]>;
  health(): Promise<HsmHealth>;
  close(): Promise<void>;
}

/** AES_KWP: RFC 5649 (integrity of the key only). AES_GCM: for tokens whose C_WrapKey can do GCM, with AAD. */
export type DataKeyWrap = { mechanism: 'AES_KWP' } | { mechanism: 'AES_GCM'; aad: Buffer };

/** The data key, its wrapped form, and for AES_GCM the IV the wrap used. */
export interface WrappedDataKey {
  plaintext: Buffer;
  wrapped: Buffer;
  iv?: Buffer;
}

/** GCM IV size: 96 bits, the size GCM is specified for. */
export const GCM_IV_BYTES = 12;

export interface HsmHealth {
  isUp: boolean;
  detail: string;
}

/** GCM tag length; pkcs11js defaults tagBits to 0, i.e. no tag at all (pkcs11-and-clients.md §1.2). */
export const GCM_TAG_BYTES = 16;
