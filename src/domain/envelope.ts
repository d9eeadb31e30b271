import type { DataKeyWrapMode } from '../hsm/profiles';
import type { Hsm } from '../hsm/hsm';
import { HsmError } from '../hsm/hsm-error';
import { InvalidCiphertextException } from '../errors/kms-errors';
import { BlobMechanism, packGcm, packHeader, packKwpBody, type ParsedBlob } from './ciphertext-blob';
import type { KeyMaterial } from './key-repository';

/**
 * Seals data keys into CiphertextBlobs and opens them, every cryptographic step inside the HSM.
 * The layouts are in ciphertext-blob.ts; the reasoning in docs/crypto.md.
 */
export class Envelope {
  constructor(
    private readonly hsm: Hsm,
    private readonly wrapMode: DataKeyWrapMode,
  ) {}

  /** GenerateDataKey: a data key born in the HSM and wrapped there under the key's current material. */
  async sealNewDataKey(material: KeyMaterial, lengthBytes: number, context: Buffer): Promise<{ plaintext: Buffer; blob: Buffer }> {
    const { kek, mac: macKey } = material.objects;
    if (this.wrapMode === 'AES_GCM') {
      const header = packHeader({ mechanism: BlobMechanism.AesGcm, keyId: material.keyId, materialVersion: material.version });
      const { plaintext, wrapped, iv } = await this.hsm.generateWrappedDataKey(kek, lengthBytes, { mechanism: 'AES_GCM', aad: Buffer.concat([header, context]) });
      return { plaintext, blob: packGcm(header, iv!, wrapped) };
    }
    const header = packHeader({ mechanism: BlobMechanism.AesKwpHmac, keyId: material.keyId, materialVersion: material.version });
    const { plaintext, wrapped } = await this.hsm.generateWrappedDataKey(kek, lengthBytes, { mechanism: 'AES_KWP' });
    const body = packKwpBody(header, lengthBytes, wrapped);
    const mac = await this.hsm.hmacSign(macKey, Buffer.concat([body, context]));
    return { plaintext, blob: Buffer.concat([body, mac]) };
  }

  /** Encrypt and ReEncrypt: AES-256-GCM in the HSM, AAD = header || context (mechanism 0x02). */
  async encrypt(material: KeyMaterial, plaintext: Buffer, context: Buffer): Promise<Buffer> {
    const header = packHeader({ mechanism: BlobMechanism.AesGcm, keyId: material.keyId, materialVersion: material.version });
    const { iv, ciphertextAndTag } = await this.hsm.encryptAesGcm(material.objects.kek, plaintext, Buffer.concat([header, context]));
    return packGcm(header, iv, ciphertextAndTag);
  }

  /** Decrypt: authenticity first (HMAC or GCM tag over header and context), then the plaintext. `material` is the version the blob names. */
  async open(blob: ParsedBlob, material: KeyMaterial, context: Buffer): Promise<Buffer> {
    const labels = material.objects;
    if (blob.mechanism === BlobMechanism.AesGcm) {
      try {
        return await this.hsm.decryptAesGcm(labels.kek, blob.ciphertextAndTag, blob.iv, Buffer.concat([blob.header, context]));
      } catch (err) {
        // A token's own way of saying "tag mismatch" is its profile's business (profiles.ts).
        if (err instanceof HsmError && err.kind === 'integrity') throw new InvalidCiphertextException();
        throw err;
      }
    }
    const isAuthentic = await this.hsm.hmacVerify(labels.mac, Buffer.concat([blob.macInput, context]), blob.mac);
    if (!isAuthentic) throw new InvalidCiphertextException();
    const unwrapped = await this.hsm.unwrapDataKey(labels.kek, blob.wrapped);
    // SoftHSM2 2.6.1 returns an RFC 5649 unwrap zero-padded to a multiple of 8: the authenticated
    // length in the header restores it (docs/hsm/softhsm2.md).
    const padding = unwrapped.subarray(blob.dataKeyLength);
    if (unwrapped.length < blob.dataKeyLength || padding.length >= 8 || padding.some((b) => b !== 0)) {
      throw new InvalidCiphertextException();
    }
    return Buffer.from(unwrapped.subarray(0, blob.dataKeyLength));
  }
}
