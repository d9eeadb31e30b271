import { InvalidCiphertextException } from '../errors/kms-errors';
import { GCM_IV_BYTES, GCM_TAG_BYTES } from '../hsm/hsm';
import { isMultiRegionKeyId, keyIdFromBytes, keyIdToBytes } from './key-ref';

/**
 * QKMS CiphertextBlob, format version 1. Every multi-byte integer is big-endian.
 *
 *   offset  size  field
 *   0       1     format version = 0x01
 *   1       1     mechanism: 0x01 AES-256 key wrap with padding (RFC 5649) + HMAC-SHA-256
 *                            0x02 AES-256-GCM
 *                            0x03 AES-256-CBC + HMAC-SHA-256
 *                  ORed with 0x80 when the key is multi-Region (its id is `mrk-` + the 16 bytes)
 *   2       16    KMS key id (UUID bytes, or the 32 hex digits of a `mrk-` id)
 *   18      4     key material version (1, 2, … ; rotation adds versions)
 *   -- header ends at 22: it is authenticated by every mechanism --
 *
 *   mechanism 0x01 (data keys on tokens without GCM wrapping):
 *   22      2     data key length L (1..1024); SoftHSM2 2.6.1 loses it on unwrap (docs/hsm/softhsm2.md)
 *   24      2     wrapped length W
 *   26      W     C_WrapKey(CKM_AES_KEY_WRAP_PAD, KEK, data key)
 *   26+W    32    C_Sign(CKM_SHA256_HMAC, MAC key, bytes[0, 26+W) || encodeEncryptionContext(ctx))
 *
 *   mechanism 0x02 (Encrypt, and data keys on tokens that wrap with GCM):
 *   22      12    IV
 *   34      N+16  ciphertext || 128-bit tag, AAD = bytes[0, 22) || encodeEncryptionContext(ctx)
 *
 *   mechanism 0x03 (Encrypt and data keys on tokens with neither GCM nor an exact RFC 5649 wrap):
 *   22      16    IV (C_GenerateRandom)
 *   38      N     C_Encrypt(CKM_AES_CBC_PAD, KEK, IV, plaintext); N a multiple of 16
 *   38+N    32    C_Sign(CKM_SHA256_HMAC, MAC key, cbcMacInput(bytes[0, 38+N), encodeEncryptionContext(ctx)))
 *                 (encrypt-then-MAC: the MAC is checked before anything is decrypted)
 *
 * Nothing follows the last field: trailing bytes make a blob invalid.
 */
export const FORMAT_VERSION = 1;
export const HEADER_BYTES = 22;
export const HMAC_BYTES = 32;
export const MAX_BLOB_BYTES = 6144; // kms-protocol.md §9, CiphertextBlob is Blob6K

export enum BlobMechanism {
  AesKwpHmac = 1,
  AesGcm = 2,
  AesCbcHmac = 3,
}

/** Set in the mechanism byte for a multi-Region key: its id is `mrk-` + hex, not a UUID. */
const MULTI_REGION_FLAG = 0x80;

export const CBC_IV_BYTES = 16;

export interface BlobHeader {
  mechanism: BlobMechanism;
  keyId: string;
  materialVersion: number;
}

export type ParsedBlob =
  | (BlobHeader & { mechanism: BlobMechanism.AesKwpHmac; header: Buffer; dataKeyLength: number; wrapped: Buffer; macInput: Buffer; mac: Buffer })
  | (BlobHeader & { mechanism: BlobMechanism.AesGcm; header: Buffer; iv: Buffer; ciphertextAndTag: Buffer })
  | (BlobHeader & { mechanism: BlobMechanism.AesCbcHmac; header: Buffer; iv: Buffer; ciphertext: Buffer; macInput: Buffer; mac: Buffer });

export function packHeader(h: BlobHeader): Buffer {
  const out = Buffer.alloc(HEADER_BYTES);
  out.writeUInt8(FORMAT_VERSION, 0);
  out.writeUInt8(h.mechanism | (isMultiRegionKeyId(h.keyId) ? MULTI_REGION_FLAG : 0), 1);
  keyIdToBytes(h.keyId).copy(out, 2);
  out.writeUInt32BE(h.materialVersion, 18);
  return out;
}

/** The part of a KWP blob that its HMAC covers, before the context is appended. */
export function packKwpBody(header: Buffer, dataKeyLength: number, wrapped: Buffer): Buffer {
  const lengths = Buffer.alloc(4);
  lengths.writeUInt16BE(dataKeyLength, 0);
  lengths.writeUInt16BE(wrapped.length, 2);
  return Buffer.concat([header, lengths, wrapped]);
}

export function packGcm(header: Buffer, iv: Buffer, ciphertextAndTag: Buffer): Buffer {
  return Buffer.concat([header, iv, ciphertextAndTag]);
}

/** The part of a CBC blob that its HMAC covers (header, IV, ciphertext), before the context is appended. */
export function packCbcBody(header: Buffer, iv: Buffer, ciphertext: Buffer): Buffer {
  return Buffer.concat([header, iv, ciphertext]);
}

/**
 * What a CBC blob's HMAC covers: body || context || the context's length in bits (uint64 BE, as AL in
 * RFC 7518 §5.2.2.1). N is not in the blob, so without the length a client could move the head of
 * the context into the ciphertext and decrypt under the rest of it with the MAC still verifying.
 */
export function cbcMacInput(body: Buffer, context: Buffer): Buffer {
  const bits = Buffer.alloc(8);
  bits.writeBigUInt64BE(BigInt(context.length) * 8n);
  return Buffer.concat([body, context, bits]);
}

/** Parses structure only; authenticity is checked in the HSM. Any malformation -> InvalidCiphertextException. */
export function unpackBlob(blob: Buffer): ParsedBlob {
  if (blob.length < HEADER_BYTES || blob.length > MAX_BLOB_BYTES || blob[0] !== FORMAT_VERSION) {
    throw new InvalidCiphertextException();
  }
  const header = blob.subarray(0, HEADER_BYTES);
  const keyId = keyIdFromBytes(blob.subarray(2, 18), (blob[1] & MULTI_REGION_FLAG) !== 0);
  const mechanism = blob[1] & ~MULTI_REGION_FLAG;
  const materialVersion = blob.readUInt32BE(18);
  if (materialVersion === 0) throw new InvalidCiphertextException();
  if (mechanism === BlobMechanism.AesKwpHmac) {
    if (blob.length < HEADER_BYTES + 4 + HMAC_BYTES) throw new InvalidCiphertextException();
    const dataKeyLength = blob.readUInt16BE(22);
    const wrappedLength = blob.readUInt16BE(24);
    const macAt = HEADER_BYTES + 4 + wrappedLength;
    if (dataKeyLength < 1 || dataKeyLength > 1024 || wrappedLength < 16 || wrappedLength % 8 !== 0 || macAt + HMAC_BYTES !== blob.length) {
      throw new InvalidCiphertextException();
    }
    return {
      mechanism: BlobMechanism.AesKwpHmac, keyId, materialVersion, header, dataKeyLength,
      wrapped: blob.subarray(26, macAt), macInput: blob.subarray(0, macAt), mac: blob.subarray(macAt),
    };
  }
  if (mechanism === BlobMechanism.AesGcm) {
    if (blob.length < HEADER_BYTES + GCM_IV_BYTES + GCM_TAG_BYTES) throw new InvalidCiphertextException();
    return {
      mechanism: BlobMechanism.AesGcm, keyId, materialVersion, header,
      iv: blob.subarray(HEADER_BYTES, HEADER_BYTES + GCM_IV_BYTES), ciphertextAndTag: blob.subarray(HEADER_BYTES + GCM_IV_BYTES),
    };
  }
  if (mechanism === BlobMechanism.AesCbcHmac) {
    const macAt = blob.length - HMAC_BYTES;
    const ciphertextBytes = macAt - HEADER_BYTES - CBC_IV_BYTES;
    if (ciphertextBytes < 16 || ciphertextBytes % 16 !== 0) throw new InvalidCiphertextException();
    return {
      mechanism: BlobMechanism.AesCbcHmac, keyId, materialVersion, header,
      iv: blob.subarray(HEADER_BYTES, HEADER_BYTES + CBC_IV_BYTES), ciphertext: blob.subarray(HEADER_BYTES + CBC_IV_BYTES, macAt),
      macInput: blob.subarray(0, macAt), mac: blob.subarray(macAt),
    };
  }
  throw new InvalidCiphertextException();
}
