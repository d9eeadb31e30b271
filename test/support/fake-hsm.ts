import crypto from 'node:crypto';
import type { DataKeyWrap, Hash, HmacKeySpec, Hsm, HsmHealth, HsmStats, KeyObjectFacts, KeyPairSpec, SigningScheme } from '../../src/hsm/hsm';
import { GCM_IV_BYTES, GCM_TAG_BYTES } from '../../src/hsm/hsm';
import { HsmError } from '../../src/hsm/hsm-error';
import { signDigest, verifyDigest } from './fake-signatures';

const KWP_IV = Buffer.from('A65959A6', 'hex'); // RFC 5649 alternative initial value

/** Hsm in node:crypto for fast unit tests. Same contract as Pkcs11Hsm (test/support/hsm-contract.ts). */
export class FakeHsm implements Hsm {
  readonly keys = new Map<string, Buffer>();
  readonly pairs = new Map<string, crypto.KeyObject>();
  /** The labels of MAC keys (generic secrets on a token) among `keys`. */
  private readonly macLabels = new Set<string>();
  /** The private key beside each public label: the fake's ECDSA check needs d (fake-signatures.ts). */
  private readonly privateOf = new Map<string, crypto.KeyObject>();
  isUp = true;

  async generateKek(label: string) {
    this.keys.set(label, crypto.randomBytes(32));
  }
  async generateMacKey(label: string, spec: HmacKeySpec = { hash: 'SHA256', bytes: 32 }) {
    this.keys.set(label, crypto.randomBytes(spec.bytes));
    this.macLabels.add(label);
  }
  async generateKeyPair(labels: { private: string; public: string }, spec: KeyPairSpec) {
    const pair = fakePair(spec);
    this.pairs.set(labels.private, pair.privateKey);
    this.pairs.set(labels.public, pair.publicKey);
    this.privateOf.set(labels.public, pair.privateKey);
  }
  async publicKey(label: string) {
    return this.pair(label).export({ type: 'spki', format: 'der' });
  }
  /** Over the digest, as the token signs (fake-signatures.ts); ECDSA signatures DER-encoded. */
  async signDigest(label: string, scheme: SigningScheme, digest: Buffer) {
    return signDigest(this.pair(label), scheme, digest);
  }
  async verifyDigest(label: string, scheme: SigningScheme, digest: Buffer, signature: Buffer) {
    return verifyDigest(this.privateOf.get(label) ?? this.pair(label), scheme, digest, signature);
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
  async deriveSharedSecret(privateLabel: string, peerPoint: Buffer) {
    const priv = this.pair(privateLabel);
    const ecdh = crypto.createECDH(priv.asymmetricKeyDetails!.namedCurve!);
    ecdh.setPrivateKey(Buffer.from(priv.export({ format: 'jwk' }).d!, 'base64url'));
    return ecdh.computeSecret(peerPoint);
  }
  async generateDataKeyPair(spec: KeyPairSpec) {
    const pair = fakePair(spec);
    return { privateKey: pair.privateKey.export({ type: 'pkcs8', format: 'der' }), publicKey: pair.publicKey.export({ type: 'spki', format: 'der' }) };
  }
  async rsaEncrypt(label: string, hash: 'SHA1' | 'SHA256', plaintext: Buffer) {
    return crypto.publicEncrypt({ key: this.pair(label), padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: hash === 'SHA1' ? 'sha1' : 'sha256' }, plaintext);
  }
  async rsaDecrypt(label: string, hash: 'SHA1' | 'SHA256', ciphertext: Buffer) {
    try {
      return crypto.privateDecrypt({ key: this.pair(label), padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: hash === 'SHA1' ? 'sha1' : 'sha256' }, ciphertext);
    } catch {
      throw new HsmError('integrity', 'C_Decrypt', 'CKR_ENCRYPTED_DATA_INVALID');
    }
  }
  async hmacSign(macLabel: string, data: Buffer, hash: Hash = 'SHA256') {
    return crypto.createHmac(hash.toLowerCase(), this.key(macLabel)).update(data).digest();
  }
  async hmacVerify(macLabel: string, data: Buffer, mac: Buffer, hash: Hash = 'SHA256') {
    const expected = await this.hmacSign(macLabel, data, hash);
    return expected.length === mac.length && crypto.timingSafeEqual(expected, mac);
  }
  async randomBytes(length: number) {
    return crypto.randomBytes(length);
  }
  async destroyKey(label: string) {
    this.keys.delete(label);
    this.macLabels.delete(label);
    this.pairs.delete(label);
    this.privateOf.delete(label);
  }
  async listKeyLabels(prefix: string) {
    return [...this.keys.keys(), ...this.pairs.keys()].filter((l) => l.startsWith(prefix));
  }
  /** Claims what Pkcs11Hsm's templates ask for: the fake has no token to report on. */
  async inspectKeyObjects(label: string): Promise<KeyObjectFacts[]> {
    const pair = this.pairs.get(label);
    if (!this.keys.has(label) && !pair) return [];
    const isPublic = pair?.type === 'public';
    const protectedKey = { CKA_SENSITIVE: true, CKA_ALWAYS_SENSITIVE: true, CKA_EXTRACTABLE: false, CKA_NEVER_EXTRACTABLE: true };
    const pairType = (PAIR_KEY_TYPES as Record<string, string>)[pair?.asymmetricKeyType ?? ''];
    return [{
      label,
      id: Buffer.from(label).toString('hex'),
      objectClass: pair ? (isPublic ? 'CKO_PUBLIC_KEY' : 'CKO_PRIVATE_KEY') : 'CKO_SECRET_KEY',
      keyType: pair ? (pairType ?? 'none') : this.macLabels.has(label) ? 'CKK_GENERIC_SECRET' : 'CKK_AES',
      flags: { CKA_TOKEN: true, CKA_PRIVATE: !isPublic, CKA_LOCAL: true, CKA_MODIFIABLE: false, ...(isPublic ? {} : protectedKey) },
      allowedMechanisms: null,
    }];
  }
  async health(): Promise<HsmHealth> {
    return { isUp: this.isUp, detail: this.isUp ? 'fake token answers' : 'fake token down' };
  }
  /** No sessions and no PKCS#11 functions: node:crypto does the work. */
  stats(): HsmStats {
    return { isUp: this.isUp, sessions: { size: 0, inUse: 0, waiters: 0 }, queuedCalls: 0, pkcs11: {} };
  }
  async close() {}

  private pair(label: string): crypto.KeyObject {
    const key = this.pairs.get(label);
    if (!key) throw new HsmError('key', 'C_FindObjects', 'CKR_OBJECT_HANDLE_INVALID');
    return key;
  }

  private key(label: string): Buffer {
    const key = this.keys.get(label);
    if (!key) throw new HsmError('key', 'C_FindObjects', 'CKR_OBJECT_HANDLE_INVALID');
    return key;
  }
}

const PAIR_KEY_TYPES = { rsa: 'CKK_RSA', ec: 'CKK_EC', ed25519: 'CKK_EC_EDWARDS' };

function fakePair(spec: KeyPairSpec): crypto.KeyPairKeyObjectResult {
  if (spec.family === 'RSA') return crypto.generateKeyPairSync('rsa', { modulusLength: spec.bits });
  if (spec.family === 'EDWARDS') return crypto.generateKeyPairSync('ed25519');
  return crypto.generateKeyPairSync('ec', { namedCurve: spec.curve });
}
