import crypto from 'node:crypto';
import type { DataKeyWrap, Hsm, HsmHealth } from '../../src/hsm/hsm';
import { GCM_IV_BYTES, GCM_TAG_BYTES } from '../../src/hsm/hsm';
import { HsmError } from '../../src/hsm/hsm-error';

const KWP_IV = Buffer.from('A65959A6', 'hex'); // RFC 5649 alternative initial value

/** Hsm in node:crypto for fast unit tests. Same contract as Pkcs11Hsm (test/support/hsm-contract.ts). */
export class FakeHsm implements Hsm {
  readonly keys = new Map<string, Buffer>();
  isUp = true;

  async generateKek(label: string) {
    this.keys.set(label, crypto.randomBytes(32));
  }
  async generateMacKey(label: string) {
    this.keys.set(label, crypto.randomBytes(32));
  }
  async generateWrappedDataKey(kekLabel: string, lengthBytes: number, wrap: DataKeyWrap) {
    const kek = this.key(kekLabel);
    const plaintext = crypto.randomBytes(lengthBytes);
    if (wrap.mechanism === 'AES_GCM') {
      const { iv, ciphertextAndTag } = await this.encryptAesGcm(kekLabel, plaintext, wrap.aad);
      return { plaintext, wrapped: ciphertextAndTag, iv };
    }
    const c = crypto.createCipheriv('id-aes256-wrap-pad', kek, KWP_IV);
    return { plaintext, wrapped: Buffer.concat([c.update(plaintext), c.final()]) };
  }
  async unwrapDataKey(kekLabel: string, wrapped: Buffer) {
    try {
      const d = crypto.createDecipheriv('id-aes256-wrap-pad', this.key(kekLabel), KWP_IV);
      return Buffer.concat([d.update(wrapped), d.final()]);
    } catch (err) {
      if (err instanceof HsmError) throw err;
      throw new HsmError('integrity', 'C_UnwrapKey', 'CKR_WRAPPED_KEY_INVALID');
    }
  }
  async encryptAesGcm(kekLabel: string, plaintext: Buffer, aad: Buffer) {
    const iv = crypto.randomBytes(GCM_IV_BYTES);
    const c = crypto.createCipheriv('aes-256-gcm', this.key(kekLabel), iv, { authTagLength: GCM_TAG_BYTES }).setAAD(aad);
    return { iv, ciphertextAndTag: Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]) };
  }
  async decryptAesGcm(kekLabel: string, ciphertextAndTag: Buffer, iv: Buffer, aad: Buffer) {
    const key = this.key(kekLabel);
    try {
      const d = crypto.createDecipheriv('aes-256-gcm', key, iv, { authTagLength: GCM_TAG_BYTES }).setAAD(aad);
      d.setAuthTag(ciphertextAndTag.subarray(-GCM_TAG_BYTES));
      return Buffer.concat([d.update(ciphertextAndTag.subarray(0, -GCM_TAG_BYTES)), d.final()]);
    } catch {
      throw new HsmError('integrity', 'C_Decrypt', 'CKR_ENCRYPTED_DATA_INVALID');
    }
  }
  async hmacSign(macLabel: string, data: Buffer) {
    return crypto.createHmac('sha256', this.key(macLabel)).update(data).digest();
  }
  async hmacVerify(macLabel: string, data: Buffer, mac: Buffer) {
    const expected = await this.hmacSign(macLabel, data);
    return expected.length === mac.length && crypto.timingSafeEqual(expected, mac);
  }
  async randomBytes(length: number) {
    return crypto.randomBytes(length);
  }
  async destroyKey(label: string) {
    this.keys.delete(label);
  }
  async listKeyLabels(prefix: string) {
    return [...this.keys.keys()].filter((l) => l.startsWith(prefix));
  }
  async health(): Promise<HsmHealth> {
    return { isUp: this.isUp, detail: this.isUp ? 'fake token answers' : 'fake token down' };
  }
  async close() {}

  private key(label: string): Buffer {
    const key = this.keys.get(label);
    if (!key) throw new HsmError('key', 'C_FindObjects', 'CKR_OBJECT_HANDLE_INVALID');
    return key;
  }
}
