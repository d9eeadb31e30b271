import * as pkcs11js from 'pkcs11js';
import type { TokenCapabilities } from '../capabilities';
import type { KeyPairUsage, ObjectRef } from '../hsm';
import { CKM_AES_KEY_WRAP_KWP, CKM_EC_EDWARDS_KEY_PAIR_GEN, CKM_EDDSA } from './mechanisms';

/** Every CKA_* policy for objects QKMS creates, in one place (docs/crypto.md §Key objects). */

function allowedMechanisms(...mechs: number[]): Buffer {
  // CK_MECHANISM_TYPE is a CK_ULONG: 8 bytes little-endian on the 64-bit Linux targets we support.
  const buf = Buffer.alloc(8 * mechs.length);
  mechs.forEach((m, i) => buf.writeBigUInt64LE(BigInt(m), i * 8));
  return buf;
}

/** What keeps KMS key material in the HSM: a token object behind the login, never readable or extractable, never changed. */
const NEVER_LEAVES: pkcs11js.Template = [
  { type: pkcs11js.CKA_TOKEN, value: true },
  { type: pkcs11js.CKA_PRIVATE, value: true },
  { type: pkcs11js.CKA_SENSITIVE, value: true },
  { type: pkcs11js.CKA_EXTRACTABLE, value: false },
  { type: pkcs11js.CKA_MODIFIABLE, value: false },
];

/** Id and label: QKMS finds objects by CKA_ID (ObjectRef); the label is for people. */
const named = (ref: ObjectRef): pkcs11js.Template => [
  { type: pkcs11js.CKA_LABEL, value: ref.label },
  { type: pkcs11js.CKA_ID, value: Buffer.from(ref.id, 'hex') },
];

const longLivedSecret = (ref: ObjectRef): pkcs11js.Template => [{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY }, ...NEVER_LEAVES, ...named(ref)];

const USAGES = {
  wrap: pkcs11js.CKA_WRAP,
  unwrap: pkcs11js.CKA_UNWRAP,
  encrypt: pkcs11js.CKA_ENCRYPT,
  decrypt: pkcs11js.CKA_DECRYPT,
  sign: pkcs11js.CKA_SIGN,
  verify: pkcs11js.CKA_VERIFY,
  derive: pkcs11js.CKA_DERIVE,
};

/** Every usage attribute set explicitly (token defaults differ between vendors): true only for `allowed`. */
function usages(...allowed: Array<keyof typeof USAGES>): pkcs11js.Template {
  return Object.entries(USAGES).map(([name, type]) => ({ type, value: allowed.includes(name as keyof typeof USAGES) }));
}

/**
 * What the token accepts (capability discovery): `allowedMechanisms` false on a token that refuses
 * CKA_ALLOWED_MECHANISMS, whose keys are then limited by their usage flags alone.
 */
export interface TemplateOptions {
  allowedMechanisms: boolean;
  /**
   * The token does RSAES_OAEP_SHA_256 as raw RSA (TokenCapabilities.rsaOaepSha256 'raw-rsa'): the
   * private key of an RSA ENCRYPT_DECRYPT pair also allows CKM_RSA_X_509 (docs/crypto.md
   * "RSAES_OAEP_SHA_256 without native OAEP" says what that permits).
   */
  rawRsaOaep?: boolean;
}

/** The template options this token calls for, from capability discovery. */
export function templateOptions(caps: TokenCapabilities): TemplateOptions {
  return { allowedMechanisms: caps.allowedMechanismsAttribute, rawRsaOaep: caps.rsaOaepSha256 === 'raw-rsa' };
}

/** CKA_ALLOWED_MECHANISMS, where the token takes it. */
function limitedTo(options: TemplateOptions, ...mechs: number[]): pkcs11js.Template {
  return options.allowedMechanisms ? [{ type: pkcs11js.CKA_ALLOWED_MECHANISMS, value: allowedMechanisms(...mechs) }] : [];
}

/**
 * A KMS key's AES-256 material: wraps data keys (RFC 5649 under either mechanism number, or GCM)
 * and encrypts (GCM, or CBC where the token has no GCM).
 */
export function kekTemplate(ref: ObjectRef, options: TemplateOptions & { isImported?: boolean }): pkcs11js.Template {
  return [
    ...longLivedSecret(ref),
    { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
    // An unwrapped key's length is the material's: a token refuses it in the template (CKR_ATTRIBUTE_READ_ONLY).
    ...(options.isImported ? [] : [{ type: pkcs11js.CKA_VALUE_LEN, value: 32 }]),
    ...usages('wrap', 'unwrap', 'encrypt', 'decrypt'),
    ...limitedTo(options, pkcs11js.CKM_AES_KEY_WRAP_PAD, CKM_AES_KEY_WRAP_KWP, pkcs11js.CKM_AES_GCM, pkcs11js.CKM_AES_CBC_PAD),
  ];
}

/**
 * An HMAC key: the one that authenticates KWP blobs (SHA-256, 32 bytes) or a KMS HMAC_* key, limited
 * to its one HMAC mechanism.
 */
export function macKeyTemplate(ref: ObjectRef, bytes: number | 'imported', mechanism: number, options: TemplateOptions): pkcs11js.Template {
  return [
    ...longLivedSecret(ref),
    // SoftHSM2 generates HMAC keys only as CKK_GENERIC_SECRET (pkcs11-and-clients.md §2.1).
    { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_GENERIC_SECRET },
    ...(bytes === 'imported' ? [] : [{ type: pkcs11js.CKA_VALUE_LEN, value: bytes }]),
    ...usages('sign', 'verify'),
    ...limitedTo(options, mechanism),
  ];
}

/** DER OIDs of the named curves KMS offers (CKA_EC_PARAMS). */
export const CURVE_OIDS: Record<'P-256' | 'P-384' | 'P-521' | 'secp256k1' | 'Ed25519', Buffer> = {
  'P-256': Buffer.from('06082a8648ce3d030107', 'hex'), // 1.2.840.10045.3.1.7
  'P-384': Buffer.from('06052b81040022', 'hex'), // 1.3.132.0.34
  'P-521': Buffer.from('06052b81040023', 'hex'), // 1.3.132.0.35
  secp256k1: Buffer.from('06052b8104000a', 'hex'), // 1.3.132.0.10
  Ed25519: Buffer.from('06032b6570', 'hex'), // 1.3.101.112 (id-Ed25519)
};

/** The key-pair generation mechanism and the signing mechanisms a spec's private key may use. */
function pairMechanisms(spec: { family: 'RSA' | 'EC' | 'EDWARDS' }, usage: KeyPairUsage): { generate: number; allowed: number[] } {
  if (spec.family === 'EDWARDS') return { generate: CKM_EC_EDWARDS_KEY_PAIR_GEN, allowed: [CKM_EDDSA] };
  if (spec.family === 'EC') return { generate: pkcs11js.CKM_EC_KEY_PAIR_GEN, allowed: [usage === 'KEY_AGREEMENT' ? pkcs11js.CKM_ECDH1_DERIVE : pkcs11js.CKM_ECDSA] };
  // A BYOK wrapping key also decrypts raw RSA, for OAEP with a hash the token's OAEP lacks (decoded
  // in the gateway): it adds nothing for a holder of the PIN, who can unwrap into a readable object.
  if (usage === 'UNWRAP') return { generate: pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN, allowed: [pkcs11js.CKM_RSA_PKCS_OAEP, pkcs11js.CKM_RSA_X_509] };
  return { generate: pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN, allowed: usage === 'SIGN_VERIFY' ? [pkcs11js.CKM_RSA_PKCS, pkcs11js.CKM_RSA_PKCS_PSS] : [pkcs11js.CKM_RSA_PKCS_OAEP] };
}

/** The generation mechanism of a key-pair spec. */
export function keyPairGenMechanism(spec: { family: 'RSA' | 'EC' | 'EDWARDS' }): pkcs11js.Mechanism {
  return { mechanism: pairMechanisms(spec, 'SIGN_VERIFY').generate };
}

/**
 * A KMS asymmetric key: a token key pair. The private key is sensitive, never extractable and
 * limited to the usage's mechanisms; the public key is a token object QKMS reads for GetPublicKey.
 */
export function keyPairTemplates(
  refs: { private: ObjectRef; public: ObjectRef },
  spec: { family: 'RSA'; bits: number } | { family: 'EC' | 'EDWARDS'; curve: keyof typeof CURVE_OIDS },
  usage: KeyPairUsage,
  options: TemplateOptions,
): { publicKey: pkcs11js.Template; privateKey: pkcs11js.Template } {
  const keyShape: pkcs11js.Template =
    spec.family === 'RSA'
      ? [{ type: pkcs11js.CKA_MODULUS_BITS, value: spec.bits }, { type: pkcs11js.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) }]
      : [{ type: pkcs11js.CKA_EC_PARAMS, value: CURVE_OIDS[spec.curve] }];
  return { publicKey: [...publicKeyTemplate(refs.public, spec, usage, options), ...keyShape], privateKey: privateKeyTemplate(refs.private, spec, usage, options) };
}

/** A KMS key's public key object, without its shape (generation gives the size, an import the values). */
export function publicKeyTemplate(ref: ObjectRef, spec: { family: 'RSA' | 'EC' | 'EDWARDS' }, usage: KeyPairUsage, options: TemplateOptions): pkcs11js.Template {
  return [
    ...named(ref),
    ...limitedTo(options, ...pairMechanisms(spec, usage).allowed),
    { type: pkcs11js.CKA_TOKEN, value: true },
    { type: pkcs11js.CKA_MODIFIABLE, value: false },
    { type: pkcs11js.CKA_PRIVATE, value: false },
    { type: pkcs11js.CKA_VERIFY, value: usage === 'SIGN_VERIFY' },
    // A wrapping key's public half encrypts (as the importer does with it); NSS softoken also
    // refuses an RSA public key that does neither (CKR_KEY_TYPE_INCONSISTENT, docs/hsm/nss-softoken.md).
    { type: pkcs11js.CKA_ENCRYPT, value: usage === 'ENCRYPT_DECRYPT' || usage === 'UNWRAP' },
    { type: pkcs11js.CKA_WRAP, value: usage === 'UNWRAP' },
  ];
}

/**
 * A KMS key's private key object: sensitive, never extractable, limited to the usage's mechanisms;
 * an RSA ENCRYPT_DECRYPT one also to raw RSA where the token does OAEP-SHA-256 that way
 * (TemplateOptions.rawRsaOaep; never the public key: encryption is node:crypto's).
 */
export function privateKeyTemplate(ref: ObjectRef, spec: { family: 'RSA' | 'EC' | 'EDWARDS' }, usage: KeyPairUsage, options: TemplateOptions): pkcs11js.Template {
  const rawRsa = usage === 'ENCRYPT_DECRYPT' && spec.family === 'RSA' && options.rawRsaOaep ? [pkcs11js.CKM_RSA_X_509] : [];
  return [
    ...named(ref),
    ...limitedTo(options, ...pairMechanisms(spec, usage).allowed, ...rawRsa),
    ...NEVER_LEAVES,
    { type: pkcs11js.CKA_SIGN, value: usage === 'SIGN_VERIFY' },
    { type: pkcs11js.CKA_DECRYPT, value: usage === 'ENCRYPT_DECRYPT' || usage === 'UNWRAP' },
    { type: pkcs11js.CKA_UNWRAP, value: usage === 'UNWRAP' },
    { type: pkcs11js.CKA_DERIVE, value: usage === 'KEY_AGREEMENT' },
  ];
}

/**
 * A session object that lives for one call of an import, never readable: the ephemeral AES key of
 * RSA-AES key wrap (unwraps), or a second copy of imported material from which the HSM measures
 * its length (extractable, to be wrapped under a key it never reveals) or finds an EC key's public
 * point (derives and signs). Destroyed before the call returns.
 */
export function importScratchTemplate(keyType: number, use: 'unwrap' | 'measure' | 'public-point', objectClass: number = pkcs11js.CKO_SECRET_KEY): pkcs11js.Template {
  return [
    { type: pkcs11js.CKA_CLASS, value: objectClass },
    { type: pkcs11js.CKA_KEY_TYPE, value: keyType },
    { type: pkcs11js.CKA_TOKEN, value: false },
    { type: pkcs11js.CKA_SENSITIVE, value: true },
    { type: pkcs11js.CKA_EXTRACTABLE, value: use === 'measure' },
    ...(objectClass === pkcs11js.CKO_SECRET_KEY ? [{ type: pkcs11js.CKA_UNWRAP, value: use === 'unwrap' }] : []),
    ...(use === 'public-point' ? [{ type: pkcs11js.CKA_DERIVE, value: true }, { type: pkcs11js.CKA_SIGN, value: true }] : []),
  ];
}

/**
 * A data key or an ECDH shared secret: a session object that lives for one call. It must be
 * readable (SENSITIVE false) and wrappable (EXTRACTABLE true) because the caller gets its value.
 */
export function ephemeralDataKeyTemplate(lengthBytes?: number): pkcs11js.Template {
  const t: pkcs11js.Template = [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_GENERIC_SECRET },
    { type: pkcs11js.CKA_TOKEN, value: false },
    { type: pkcs11js.CKA_SENSITIVE, value: false },
    { type: pkcs11js.CKA_EXTRACTABLE, value: true },
  ];
  if (lengthBytes !== undefined) t.push({ type: pkcs11js.CKA_VALUE_LEN, value: lengthBytes });
  return t;
}

/**
 * A data key pair (GenerateDataKeyPair): session objects that live for one call. The private key
 * must be readable (SENSITIVE false, EXTRACTABLE true) because the caller receives it.
 */
export function ephemeralKeyPairTemplates(
  spec: { family: 'RSA'; bits: number } | { family: 'EC' | 'EDWARDS'; curve: keyof typeof CURVE_OIDS },
): { publicKey: pkcs11js.Template; privateKey: pkcs11js.Template } {
  return {
    publicKey: [
      { type: pkcs11js.CKA_TOKEN, value: false },
      ...(spec.family === 'RSA'
        ? [{ type: pkcs11js.CKA_MODULUS_BITS, value: spec.bits }, { type: pkcs11js.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) }]
        : [{ type: pkcs11js.CKA_EC_PARAMS, value: CURVE_OIDS[spec.curve] }]),
      { type: pkcs11js.CKA_VERIFY, value: true },
    ],
    privateKey: [
      { type: pkcs11js.CKA_TOKEN, value: false },
      { type: pkcs11js.CKA_SENSITIVE, value: false },
      { type: pkcs11js.CKA_EXTRACTABLE, value: true },
      { type: pkcs11js.CKA_SIGN, value: true },
    ],
  };
}

/** The AES key a length is measured under: a session object that only wraps, never read. */
export function measuringWrapKeyTemplate(): pkcs11js.Template {
  return [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
    { type: pkcs11js.CKA_TOKEN, value: false },
    { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
    { type: pkcs11js.CKA_SENSITIVE, value: true },
    { type: pkcs11js.CKA_WRAP, value: true },
  ];
}
