import { dataKeyWrapModes, encryptMode, RANDOM_DATA_KEY_MODES, type DataKeyWrapMode, type TokenCapabilities } from '../hsm/capabilities';
import type { Hsm } from '../hsm/hsm';
import { HsmError } from '../hsm/hsm-error';
import { InvalidCiphertextException, UnsupportedOperationException } from '../errors/kms-errors';
import { BlobMechanism, cbcMacInput, packCbcBody, packGcm, packHeader, packKwpBody, type ParsedBlob } from './ciphertext-blob';
import type { KeyMaterial } from './key-repository';

/** The constructions this token can do, found by capability discovery (hsm/capabilities.ts). */
export interface EnvelopeModes {
  /** Data-key constructions in order of preference; a request uses the first that can make its length. */
  dataKeys: readonly DataKeyWrapMode[];
  /** How Encrypt seals. */
  encrypt: 'AES_GCM' | 'AES_CBC_HMAC';
  /** Data-key lengths (bytes) the token generates as key objects, which KWP and GCM wrapping need. */
  keyObjectBytes?: { min: number; max: number };
}

/** The token's constructions (or QKMS_DATA_KEY_WRAP's one), in order of preference. */
export function envelopeModes(caps: TokenCapabilities, wrap?: DataKeyWrapMode): EnvelopeModes {
  return { dataKeys: wrap ? [wrap] : dataKeyWrapModes(caps), encrypt: encryptMode(caps), keyObjectBytes: caps.genericSecretBytes };
}

/**
 * Seals data keys into CiphertextBlobs and opens them, every cryptographic step inside the HSM.
 * The layouts are in ciphertext-blob.ts; the reasoning in docs/crypto.md. Blobs of every
 * construction open on any token that can do it, whichever this token seals new ones with.
 */
export class Envelope {
  constructor(
    private readonly hsm: Hsm,
    private readonly modes: EnvelopeModes,
  ) {}

  /** GenerateDataKey: a data key born in the HSM and sealed there under the key's current material. */
  async sealNewDataKey(material: KeyMaterial, lengthBytes: number, context: Buffer): Promise<{ plaintext: Buffer; blob: Buffer }> {
    const { kek, mac: macKey } = material.objects;
    const mode = macKey ? this.dataKeyMode(lengthBytes) : this.gcmDataKeyMode(lengthBytes);
    if (mode === 'AES_CBC_HMAC') {
      const plaintext = await this.hsm.randomBytes(lengthBytes);
      return { plaintext, blob: await this.sealCbc(material, plaintext, context) };
    }
    if (mode === 'AES_GCM' || mode === 'AES_GCM_ENCRYPT') {
      // Either way the Encrypt blob's format (0x02): C_Decrypt opens it whichever call sealed it.
      const header = packHeader({ mechanism: BlobMechanism.AesGcm, keyId: material.keyId, materialVersion: material.version });
      const { plaintext, wrapped, iv } = await this.hsm.generateWrappedDataKey(kek, lengthBytes, { mechanism: mode, aad: Buffer.concat([header, context]) });
      return { plaintext, blob: packGcm(header, iv!, wrapped) };
    }
    const header = packHeader({ mechanism: BlobMechanism.AesKwpHmac, keyId: material.keyId, materialVersion: material.version });
    const { plaintext, wrapped } = await this.hsm.generateWrappedDataKey(kek, lengthBytes, { mechanism: 'AES_KWP' });
    const body = packKwpBody(header, lengthBytes, wrapped);
    const mac = await this.hsm.hmacSign(macKey, Buffer.concat([body, context]));
    return { plaintext, blob: Buffer.concat([body, mac]) };
  }

  /** The first construction that can make a data key of this length: wrapping needs a key object of that length. */
  private dataKeyMode(lengthBytes: number): DataKeyWrapMode {
    const range = this.modes.keyObjectBytes;
    const fits = !range || (lengthBytes >= range.min && lengthBytes <= range.max);
    const mode = this.modes.dataKeys.find((m) => RANDOM_DATA_KEY_MODES.has(m) || fits);
    if (!mode) throw new UnsupportedOperationException(`This HSM generates data keys of ${range!.min} to ${range!.max} bytes only (CKM_GENERIC_SECRET_KEY_GEN).`);
    return mode;
  }

  /**
   * Imported material is the KEK alone (domain/import-material.ts): its data keys are GCM blobs,
   * sealed by GCM wrapping where the token does it and the length fits, else by C_Encrypt.
   */
  private gcmDataKeyMode(lengthBytes: number): 'AES_GCM' | 'AES_GCM_ENCRYPT' {
    const range = this.modes.keyObjectBytes;
    const fits = !range || (lengthBytes >= range.min && lengthBytes <= range.max);
    return this.modes.dataKeys.includes('AES_GCM') && fits ? 'AES_GCM' : 'AES_GCM_ENCRYPT';
  }

  /** Encrypt and ReEncrypt: AES-256-GCM in the HSM, AAD = header || context (mechanism 0x02), or CBC + HMAC (0x03). */
  async encrypt(material: KeyMaterial, plaintext: Buffer, context: Buffer): Promise<Buffer> {
    if (this.modes.encrypt === 'AES_CBC_HMAC') return this.sealCbc(material, plaintext, context);
    const header = packHeader({ mechanism: BlobMechanism.AesGcm, keyId: material.keyId, materialVersion: material.version });
    const { iv, ciphertextAndTag } = await this.hsm.encryptAesGcm(material.objects.kek, plaintext, Buffer.concat([header, context]));
    return packGcm(header, iv, ciphertextAndTag);
  }

  /** Encrypt-then-MAC: AES-256-CBC under the KEK, HMAC-SHA-256 under the MAC key over header, IV, ciphertext, context and the context's length (cbcMacInput). */
  private async sealCbc(material: KeyMaterial, plaintext: Buffer, context: Buffer): Promise<Buffer> {
    const header = packHeader({ mechanism: BlobMechanism.AesCbcHmac, keyId: material.keyId, materialVersion: material.version });
    const { iv, ciphertext } = await this.hsm.encryptAesCbc(material.objects.kek, plaintext);
    const body = packCbcBody(header, iv, ciphertext);
    const mac = await this.hsm.hmacSign(material.objects.mac, cbcMacInput(body, context));
    return Buffer.concat([body, mac]);
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
    const macInput = blob.mechanism === BlobMechanism.AesCbcHmac ? cbcMacInput(blob.macInput, context) : Buffer.concat([blob.macInput, context]);
    const isAuthentic = await this.hsm.hmacVerify(labels.mac, macInput, blob.mac);
    if (!isAuthentic) throw new InvalidCiphertextException();
    if (blob.mechanism === BlobMechanism.AesCbcHmac) return this.hsm.decryptAesCbc(labels.kek, blob.iv, blob.ciphertext);
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
