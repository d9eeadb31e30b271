import crypto from 'node:crypto';
import type { DataKeyWrap, Hash, HmacKeySpec, Hsm, HsmHealth, HsmStats, ImportedFacts, ImportRequest, KeyObjectFacts, KeyPairSpec, ObjectRef, SigningScheme } from '../../src/hsm/hsm';
import { GCM_IV_BYTES, GCM_TAG_BYTES } from '../../src/hsm/hsm';
import { HsmError } from '../../src/hsm/hsm-error';
import { decodeOaep } from '../../src/hsm/rsa-oaep';
import type { CapabilityName, TokenCapabilities } from '../../src/hsm/capabilities';
import { CAPABILITY_FEATURES } from '../../src/hsm/capabilities';
import { signDigest, verifyDigest } from './fake-signatures';

const KWP_IV = Buffer.from('A65959A6', 'hex'); // RFC 5649 alternative initial value

/** Hsm in node:crypto for fast unit tests. Same contract as Pkcs11Hsm (test/support/hsm-contract.ts). */
/** One fake token object: a secret (AES or HMAC key) or one half of a key pair. */
interface FakeObject {
  label: string;
  secret?: Buffer;
  /** A generic secret (an HMAC key) rather than an AES key. */
  isMac?: boolean;
  pair?: crypto.KeyObject;
  /** Beside a public key: its private half, which the fake's ECDSA check needs (fake-signatures.ts). */
  privateKey?: crypto.KeyObject;
  /** CKA_ALLOWED_MECHANISMS as the token would report it; unset: no restriction (limitMechanisms sets it). */
  allowedMechanisms?: string[];
}

/** Hsm in node:crypto for fast unit tests. Same contract as Pkcs11Hsm (test/support/hsm-contract.ts). */
export class FakeHsm implements Hsm {
  /** CKA_ID -> every object carrying it (normally one; `duplicate` makes an ambiguous id). */
  readonly objects = new Map<string, FakeObject[]>();
  isUp = true;

  async generateKek(ref: ObjectRef) {
    this.add(ref, { label: ref.label, secret: crypto.randomBytes(32) });
  }
  async generateMacKey(ref: ObjectRef, spec: HmacKeySpec = { hash: 'SHA256', bytes: 32 }) {
    this.add(ref, { label: ref.label, secret: crypto.randomBytes(spec.bytes), isMac: true });
  }
  async generateKeyPair(refs: { private: ObjectRef; public: ObjectRef }, spec: KeyPairSpec) {
    const pair = fakePair(spec);
    this.add(refs.private, { label: refs.private.label, pair: pair.privateKey });
    this.add(refs.public, { label: refs.public.label, pair: pair.publicKey, privateKey: pair.privateKey });
  }
  /** A second object with the same id, as a crash of the old label scheme could leave (tests of ambiguity). */
  duplicate(ref: ObjectRef) {
    const [first] = this.objects.get(ref.id) ?? [];
    if (first) this.add(ref, { ...first });
  }
  async publicKey(ref: ObjectRef) {
    return this.pair(ref).export({ type: 'spki', format: 'der' });
  }
  /** Over the digest, as the token signs (fake-signatures.ts); ECDSA signatures DER-encoded. */
  async signDigest(ref: ObjectRef, scheme: SigningScheme, digest: Buffer) {
    return signDigest(this.pair(ref), scheme, digest);
  }
  async verifyDigest(ref: ObjectRef, scheme: SigningScheme, digest: Buffer, signature: Buffer) {
    const object = this.one(ref, 'C_FindObjects');
    return verifyDigest(object.privateKey ?? this.pair(ref), scheme, digest, signature);
  }
  async generateWrappedDataKey(kekRef: ObjectRef, lengthBytes: number, wrap: DataKeyWrap) {
    const kek = this.secret(kekRef);
    const plaintext = crypto.randomBytes(lengthBytes);
    if (wrap.mechanism !== 'AES_KWP') {
      const { iv, ciphertextAndTag } = await this.encryptAesGcm(kekRef, plaintext, wrap.aad);
      return { plaintext, wrapped: ciphertextAndTag, iv };
    }
    const c = crypto.createCipheriv('id-aes256-wrap-pad', kek, KWP_IV);
    return { plaintext, wrapped: Buffer.concat([c.update(plaintext), c.final()]) };
  }
  /** The same facts as the PKCS#11 import (import-ops.ts), computed in node:crypto. */
  async importKeyMaterial(request: ImportRequest): Promise<ImportedFacts> {
    const hash = request.algorithm.endsWith('_SHA_1') ? 'SHA1' : 'SHA256';
    let material: Buffer;
    if (request.algorithm.startsWith('RSAES_OAEP_')) {
      material = await this.rsaDecrypt(request.wrappingKey, hash, request.encrypted);
    } else {
      const rsaBytes = (this.pair(request.wrappingKey).asymmetricKeyDetails!.modulusLength! + 7) >> 3;
      const aesKey = await this.rsaDecrypt(request.wrappingKey, hash, request.encrypted.subarray(0, rsaBytes));
      try {
        const d = crypto.createDecipheriv(`id-aes${aesKey.length * 8}-wrap-pad`, aesKey, KWP_IV);
        material = Buffer.concat([d.update(request.encrypted.subarray(rsaBytes)), d.final()]);
      } catch {
        throw new HsmError('integrity', 'C_UnwrapKey', 'CKR_WRAPPED_KEY_INVALID');
      }
    }
    const { target } = request;
    if (target.kind === 'AES') {
      this.add(target.ref, { label: target.ref.label, secret: material });
      const check = crypto.createCipheriv(`aes-${material.length * 8}-ecb`, material, null).setAutoPadding(false).update(Buffer.alloc(16));
      return { check, valueBytes: material.length };
    }
    if (target.kind === 'HMAC') {
      this.add(target.ref, { label: target.ref.label, secret: material, isMac: true });
      return { check: crypto.createHmac(target.hash.toLowerCase(), material).update('QKMS imported key material check value').digest(), valueBytes: Math.ceil(material.length / 8) * 8 };
    }
    let privateKey: crypto.KeyObject;
    try {
      privateKey = crypto.createPrivateKey({ key: material, format: 'der', type: 'pkcs8' });
    } catch {
      throw new HsmError('integrity', 'C_UnwrapKey', 'CKR_WRAPPED_KEY_INVALID');
    }
    const publicKey = crypto.createPublicKey(privateKey);
    this.add(target.refs.private, { label: target.refs.private.label, pair: privateKey });
    this.add(target.refs.public, { label: target.refs.public.label, pair: publicKey, privateKey });
    const details = privateKey.asymmetricKeyDetails!;
    const curves: Record<string, string> = { prime256v1: 'P-256', secp384r1: 'P-384', secp521r1: 'P-521', secp256k1: 'secp256k1' };
    return {
      check: publicKey.export({ type: 'spki', format: 'der' }),
      keyShape: details.modulusLength ? { bits: details.modulusLength } : { curve: curves[details.namedCurve ?? ''] ?? String(details.namedCurve) },
    };
  }
  async unwrapDataKey(kekRef: ObjectRef, wrapped: Buffer) {
    const kek = this.secret(kekRef);
    try {
      const d = crypto.createDecipheriv('id-aes256-wrap-pad', kek, KWP_IV);
      return Buffer.concat([d.update(wrapped), d.final()]);
    } catch {
      throw new HsmError('integrity', 'C_UnwrapKey', 'CKR_WRAPPED_KEY_INVALID');
    }
  }
  async encryptAesGcm(kekRef: ObjectRef, plaintext: Buffer, aad: Buffer) {
    const iv = crypto.randomBytes(GCM_IV_BYTES);
    const c = crypto.createCipheriv('aes-256-gcm', this.secret(kekRef), iv, { authTagLength: GCM_TAG_BYTES }).setAAD(aad);
    return { iv, ciphertextAndTag: Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]) };
  }
  async encryptAesCbc(kekRef: ObjectRef, plaintext: Buffer) {
    const iv = crypto.randomBytes(16);
    const c = crypto.createCipheriv('aes-256-cbc', this.secret(kekRef), iv);
    return { iv, ciphertext: Buffer.concat([c.update(plaintext), c.final()]) };
  }
  async decryptAesCbc(kekRef: ObjectRef, iv: Buffer, ciphertext: Buffer) {
    try {
      const d = crypto.createDecipheriv('aes-256-cbc', this.secret(kekRef), iv);
      return Buffer.concat([d.update(ciphertext), d.final()]);
    } catch {
      throw new HsmError('integrity', 'C_Decrypt', 'CKR_ENCRYPTED_DATA_INVALID');
    }
  }
  async decryptAesGcm(kekRef: ObjectRef, ciphertextAndTag: Buffer, iv: Buffer, aad: Buffer) {
    const key = this.secret(kekRef);
    try {
      const d = crypto.createDecipheriv('aes-256-gcm', key, iv, { authTagLength: GCM_TAG_BYTES }).setAAD(aad);
      d.setAuthTag(ciphertextAndTag.subarray(-GCM_TAG_BYTES));
      return Buffer.concat([d.update(ciphertextAndTag.subarray(0, -GCM_TAG_BYTES)), d.final()]);
    } catch {
      throw new HsmError('integrity', 'C_Decrypt', 'CKR_ENCRYPTED_DATA_INVALID');
    }
  }
  async deriveSharedSecret(privateKey: ObjectRef, peerPoint: Buffer) {
    const priv = this.pair(privateKey);
    const ecdh = crypto.createECDH(priv.asymmetricKeyDetails!.namedCurve!);
    ecdh.setPrivateKey(Buffer.from(priv.export({ format: 'jwk' }).d!, 'base64url'));
    return ecdh.computeSecret(peerPoint);
  }
  async generateDataKeyPair(spec: KeyPairSpec) {
    const pair = fakePair(spec);
    return { privateKey: pair.privateKey.export({ type: 'pkcs8', format: 'der' }), publicKey: pair.publicKey.export({ type: 'spki', format: 'der' }) };
  }
  async rsaEncrypt(ref: ObjectRef, hash: 'SHA1' | 'SHA256', plaintext: Buffer) {
    return crypto.publicEncrypt({ key: this.pair(ref), padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: hash === 'SHA1' ? 'sha1' : 'sha256' }, plaintext);
  }
  async rsaDecrypt(ref: ObjectRef, hash: 'SHA1' | 'SHA256', ciphertext: Buffer) {
    const key = this.pair(ref);
    if (hash === 'SHA256' && this.caps.rsaOaepSha256 === 'raw-rsa') return this.rawRsaOaepDecrypt(ref, key, ciphertext);
    try {
      return crypto.privateDecrypt({ key, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: hash === 'SHA1' ? 'sha1' : 'sha256' }, ciphertext);
    } catch {
      throw new HsmError('integrity', 'C_Decrypt', 'CKR_ENCRYPTED_DATA_INVALID');
    }
  }
  /**
   * As Pkcs11Hsm on a token whose OAEP lacks SHA-256 (rsa-oaep-ops.ts): raw RSA with the private
   * key, refused as SoftHSM2 refuses a mechanism outside CKA_ALLOWED_MECHANISMS, then the gateway's decoder.
   */
  private rawRsaOaepDecrypt(ref: ObjectRef, key: crypto.KeyObject, ciphertext: Buffer): Buffer {
    const allowed = this.one(ref, 'C_FindObjects').allowedMechanisms;
    if (allowed && !allowed.includes('CKM_RSA_X_509')) throw new HsmError('unsupported', 'C_DecryptInit', 'CKR_MECHANISM_INVALID');
    const k = key.asymmetricKeyDetails!.modulusLength! / 8;
    let block: Buffer | undefined;
    try {
      block = ciphertext.length === k ? crypto.privateDecrypt({ key, padding: crypto.constants.RSA_NO_PADDING }, ciphertext) : undefined;
    } catch {
      block = undefined; // c ≥ n
    }
    const message = block && decodeOaep(block, 'SHA256');
    if (!message) throw new HsmError('integrity', 'C_Decrypt', undefined);
    return message;
  }
  /** Makes the object's CKA_ALLOWED_MECHANISMS these (a key made by an earlier release, say). */
  limitMechanisms(ref: ObjectRef, mechanisms: string[]): void {
    for (const o of this.objects.get(ref.id) ?? []) o.allowedMechanisms = mechanisms;
  }
  async hmacSign(macRef: ObjectRef, data: Buffer, hash: Hash = 'SHA256') {
    return crypto.createHmac(hash.toLowerCase(), this.secret(macRef)).update(data).digest();
  }
  async hmacVerify(macRef: ObjectRef, data: Buffer, mac: Buffer, hash: Hash = 'SHA256') {
    const expected = await this.hmacSign(macRef, data, hash);
    return expected.length === mac.length && crypto.timingSafeEqual(expected, mac);
  }
  async randomBytes(length: number) {
    return crypto.randomBytes(length);
  }
  async destroyKey(ref: ObjectRef) {
    const n = this.objects.get(ref.id)?.length ?? 0;
    this.objects.delete(ref.id);
    return n;
  }
  async countObjects(ref: ObjectRef) {
    return this.objects.get(ref.id)?.length ?? 0;
  }
  async listKeyObjects(labelPrefix: string) {
    return [...this.objects].flatMap(([id, all]) => all.filter((o) => o.label.startsWith(labelPrefix)).map((o) => ({ id, label: o.label })));
  }
  /** Claims what Pkcs11Hsm's templates ask for: the fake has no token to report on. */
  async inspectKeyObjects(ref: ObjectRef): Promise<KeyObjectFacts[]> {
    return (this.objects.get(ref.id) ?? []).map((o) => {
      const isPublic = o.pair?.type === 'public';
      const protectedKey = { CKA_SENSITIVE: true, CKA_ALWAYS_SENSITIVE: true, CKA_EXTRACTABLE: false, CKA_NEVER_EXTRACTABLE: true };
      return {
        label: o.label,
        id: ref.id,
        objectClass: o.pair ? (isPublic ? 'CKO_PUBLIC_KEY' : 'CKO_PRIVATE_KEY') : 'CKO_SECRET_KEY',
        keyType: o.pair ? ((PAIR_KEY_TYPES as Record<string, string>)[o.pair.asymmetricKeyType ?? ''] ?? 'none') : o.isMac ? 'CKK_GENERIC_SECRET' : 'CKK_AES',
        flags: { CKA_TOKEN: true, CKA_PRIVATE: !isPublic, CKA_LOCAL: true, CKA_MODIFIABLE: false, ...(isPublic ? {} : protectedKey) },
        allowedMechanisms: o.allowedMechanisms ?? null,
      };
    });
  }
  async health(): Promise<HsmHealth> {
    return { isUp: this.isUp, detail: this.isUp ? 'fake token answers' : 'fake token down' };
  }
  /** Everything works, unless a test says otherwise (fullCapabilities). */
  caps: TokenCapabilities = fullCapabilities();
  capabilities(): TokenCapabilities {
    return this.caps;
  }
  /** No sessions and no PKCS#11 functions: node:crypto does the work. */
  stats(): HsmStats {
    return { isUp: this.isUp, sessions: { size: 0, inUse: 0, waiters: 0 }, queuedCalls: 0, pkcs11: {} };
  }
  pendingCalls(): number {
    return 0;
  }
  async close() {}

  private add(ref: ObjectRef, object: FakeObject): void {
    this.objects.set(ref.id, [...(this.objects.get(ref.id) ?? []), object]);
  }

  /** Exactly one object with the id, as Pkcs11Hsm's lookup demands. */
  private one(ref: ObjectRef, fn: string): FakeObject {
    const found = this.objects.get(ref.id) ?? [];
    if (found.length === 1) return found[0];
    throw new HsmError('key', fn, found.length === 0 ? 'CKR_OBJECT_HANDLE_INVALID' : undefined, { cause: new Error(`${found.length} objects carry the id of ${ref.label}`) });
  }

  private pair(ref: ObjectRef): crypto.KeyObject {
    const key = this.one(ref, 'C_FindObjects').pair;
    if (!key) throw new HsmError('config', 'C_SignInit', 'CKR_KEY_TYPE_INCONSISTENT');
    return key;
  }

  private secret(ref: ObjectRef): Buffer {
    const key = this.one(ref, 'C_FindObjects').secret;
    if (!key) throw new HsmError('config', 'C_EncryptInit', 'CKR_KEY_TYPE_INCONSISTENT');
    return key;
  }
}

const PAIR_KEY_TYPES = { rsa: 'CKK_RSA', ec: 'CKK_EC', ed25519: 'CKK_EC_EDWARDS' };

function fakePair(spec: KeyPairSpec): crypto.KeyPairKeyObjectResult {
  if (spec.family === 'RSA') return crypto.generateKeyPairSync('rsa', { modulusLength: spec.bits });
  if (spec.family === 'EDWARDS') return crypto.generateKeyPairSync('ed25519');
  return crypto.generateKeyPairSync('ec', { namedCurve: spec.curve });
}

/** A token that can do everything QKMS asks of one, with these capabilities switched off. */
export function fullCapabilities(...without: CapabilityName[]): TokenCapabilities {
  const checks = Object.fromEntries(
    Object.keys(CAPABILITY_FEATURES).map((name) => [name, { ok: !without.includes(name as CapabilityName), mechanism: name, detail: without.includes(name as CapabilityName) ? 'switched off by the test' : 'fake' }]),
  ) as TokenCapabilities['checks'];
  return {
    token: { manufacturer: 'fake', model: 'fake', library: 'node:crypto' },
    checks,
    kwpMechanism: 0x210a,
    genericSecretBytes: { min: 1, max: 1024 },
    rsaBits: { min: 1024, max: 4096 },
    allowedMechanismsAttribute: true,
    ...(!without.includes('rsa-oaep-sha256') && { rsaOaepSha256: 'native' as const }),
  };
}

/** These capabilities on a token whose CKM_RSA_PKCS_OAEP lacks SHA-256, as SoftHSM2's: OAEP-SHA-256 as raw RSA. */
export function withRawRsaOaep(caps: TokenCapabilities): TokenCapabilities {
  const check = { ok: true, mechanism: 'CKM_RSA_X_509', detail: 'known answer verified: raw RSA in the HSM, OAEP-SHA-256 checked in QKMS (fake)' };
  return { ...caps, checks: { ...caps.checks, 'rsa-oaep-sha256': check }, rsaOaepSha256: 'raw-rsa' };
}
