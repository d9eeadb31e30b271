import type { Hash, KeyObjectFacts, KeyPairSpec, KeyPairUsage } from './hsm';

/**
 * What the token can do, found at start-up (pkcs11/capability-probes.ts) before any key is made:
 * the mechanism list and, for everything QKMS relies on, a small known-answer test with throwaway
 * objects — a listed mechanism may not work, may not be the algorithm its name says (NSS's
 * CKM_AES_KEY_WRAP_PAD is not RFC 5649), or may be refused only on token objects.
 */
export type CapabilityName =
  | 'aes-token-keys' // non-extractable AES-256 token keys: every symmetric KMS key
  | 'hmac-keys' // generic-secret key generation: HMAC KMS keys, the blob and internal MAC keys
  | 'hmac-sha224' | 'hmac-sha256' | 'hmac-sha384' | 'hmac-sha512'
  | 'random'
  | 'aes-kwp' // RFC 5649 key wrap (the AES_KWP_HMAC data-key construction)
  | 'aes-gcm' // AES-GCM C_Encrypt / C_Decrypt
  | 'aes-gcm-wrap' // AES-GCM C_WrapKey (the AES_GCM data-key construction)
  | 'aes-cbc' // AES-CBC with PKCS#7 padding, C_Encrypt / C_Decrypt (the AES_CBC_HMAC constructions)
  | 'rsa-keys' | 'rsa-pss' | 'rsa-pkcs1' | 'rsa-oaep-sha1' | 'rsa-oaep-sha256'
  | 'ec-p256' | 'ec-p384' | 'ec-p521' | 'ec-secp256k1' | 'ecdsa' | 'ecdh'
  | 'ed25519';

export interface CapabilityCheck {
  ok: boolean;
  /** The PKCS#11 mechanism (or function) it stands for, by name: what an operator looks up. */
  mechanism: string;
  /** How it was established: "known answer verified", "not listed", "refused: CKR_…", … */
  detail: string;
}

export interface TokenCapabilities {
  token: { manufacturer: string; model: string; library: string };
  checks: Record<CapabilityName, CapabilityCheck>;
  /** The mechanism number whose wrap RFC 5649 unwraps (CKM_AES_KEY_WRAP_PAD or _KWP), when one does. */
  kwpMechanism?: number;
  /** Data-key lengths (bytes) C_GenerateKey makes as generic secrets, between the smallest and largest of the lengths tried. */
  genericSecretBytes?: { min: number; max: number };
  /** RSA modulus sizes (bits) the token generates. */
  rsaBits?: { min: number; max: number };
  /** The token accepts CKA_ALLOWED_MECHANISMS on token objects; without it keys are limited by their usage flags only. */
  allowedMechanismsAttribute: boolean;
  /**
   * How RSAES_OAEP_SHA_256 is done when it is ('rsa-oaep-sha256' ok): 'native' with CKM_RSA_PKCS_OAEP,
   * or 'raw-rsa' where that mechanism lacks SHA-256 (SoftHSM2): the private key's raw RSA
   * (CKM_RSA_X_509) in the HSM, the OAEP padding checked in the gateway (rsa-oaep.ts), and only
   * keys whose private object allows CKM_RSA_X_509 (rsaOaepKeyProblem). Absent: not at all.
   */
  rsaOaepSha256?: 'native' | 'raw-rsa';
}

/** The KMS features each capability carries, for the operator's table and error messages. */
export const CAPABILITY_FEATURES: Readonly<Record<CapabilityName, string>> = {
  'aes-token-keys': 'CreateKey SYMMETRIC_DEFAULT; Encrypt, Decrypt, ReEncrypt, GenerateDataKey*',
  'hmac-keys': 'CreateKey HMAC_*; the MAC keys of every symmetric key, pagination markers and the audit trail',
  'hmac-sha224': 'HMAC_224 keys (GenerateMac, VerifyMac)',
  'hmac-sha256': 'HMAC_256 keys; AES_KWP_HMAC and AES_CBC_HMAC blobs; markers; audit trail',
  'hmac-sha384': 'HMAC_384 keys (GenerateMac, VerifyMac)',
  'hmac-sha512': 'HMAC_512 keys (GenerateMac, VerifyMac)',
  random: 'GenerateRandom; IVs; key ids',
  'aes-kwp': 'GenerateDataKey* as AES_KWP_HMAC blobs',
  'aes-gcm': 'Encrypt and ReEncrypt as AES_GCM blobs',
  'aes-gcm-wrap': 'GenerateDataKey* as AES_GCM blobs',
  'aes-cbc': 'Encrypt and GenerateDataKey* as AES_CBC_HMAC blobs (when GCM or KWP is missing)',
  'rsa-keys': 'CreateKey RSA_2048/3072/4096 (within the sizes found)',
  'rsa-pss': 'Sign/Verify RSASSA_PSS_*',
  'rsa-pkcs1': 'Sign/Verify RSASSA_PKCS1_V1_5_*',
  'rsa-oaep-sha1': 'Encrypt/Decrypt RSAES_OAEP_SHA_1',
  'rsa-oaep-sha256': 'Encrypt/Decrypt RSAES_OAEP_SHA_256',
  'ec-p256': 'CreateKey ECC_NIST_P256; GenerateDataKeyPair ECC_NIST_P256',
  'ec-p384': 'CreateKey ECC_NIST_P384; GenerateDataKeyPair ECC_NIST_P384',
  'ec-p521': 'CreateKey ECC_NIST_P521; GenerateDataKeyPair ECC_NIST_P521',
  'ec-secp256k1': 'CreateKey ECC_SECG_P256K1; GenerateDataKeyPair ECC_SECG_P256K1',
  ecdsa: 'Sign/Verify ECDSA_SHA_*',
  ecdh: 'DeriveSharedSecret (KEY_AGREEMENT keys)',
  ed25519: 'CreateKey ECC_NIST_EDWARDS25519; Sign/Verify ED25519_SHA_512',
};

/** How data keys are sealed (docs/crypto.md), in order of preference. */
export type DataKeyWrapMode = 'AES_KWP_HMAC' | 'AES_GCM' | 'AES_CBC_HMAC' | 'AES_GCM_ENCRYPT';
/** In order of preference; AES_GCM_ENCRYPT last: it is for tokens that refuse the others' readable key objects, and is chosen by setting (docs/crypto.md). */
export const DATA_KEY_WRAP_MODES: readonly DataKeyWrapMode[] = ['AES_KWP_HMAC', 'AES_GCM', 'AES_CBC_HMAC', 'AES_GCM_ENCRYPT'];
const NEEDS: Readonly<Record<DataKeyWrapMode, CapabilityName>> = { AES_KWP_HMAC: 'aes-kwp', AES_GCM: 'aes-gcm-wrap', AES_CBC_HMAC: 'aes-cbc', AES_GCM_ENCRYPT: 'aes-gcm' };
/** The constructions whose data key comes from C_GenerateRandom, not a key object: any length the KMS allows. */
export const RANDOM_DATA_KEY_MODES: ReadonlySet<DataKeyWrapMode> = new Set(['AES_CBC_HMAC', 'AES_GCM_ENCRYPT']);

/** The data-key constructions the token can do, in order of preference. */
export function dataKeyWrapModes(caps: TokenCapabilities): DataKeyWrapMode[] {
  // Wrapping needs the data key as a key object whose value can be read: a generated generic secret.
  return DATA_KEY_WRAP_MODES.filter((m) => caps.checks[NEEDS[m]].ok && (RANDOM_DATA_KEY_MODES.has(m) || caps.genericSecretBytes !== undefined));
}

/** The token cannot serve KMS at all: what is missing (coreProblems). Exit code 2: the operator must choose another token or setting. */
export class TokenCannotServe extends Error {
  constructor(readonly problems: string[]) {
    super(`the token cannot serve KMS: ${problems.join('; ')}`);
    this.name = 'TokenCannotServe';
  }
}

/** The checks that failed, as "capability: mechanism detail" lines (the start-up log and qkms token capabilities). */
export function missingCapabilities(caps: TokenCapabilities): string[] {
  return Object.entries(caps.checks)
    .filter(([, c]) => !c.ok)
    .map(([name, c]) => `${name}: ${c.mechanism} ${c.detail}`);
}

/** How Encrypt seals: AES-GCM where the token does it, else AES-CBC with an HMAC. */
export function encryptMode(caps: TokenCapabilities): 'AES_GCM' | 'AES_CBC_HMAC' {
  return caps.checks['aes-gcm'].ok ? 'AES_GCM' : 'AES_CBC_HMAC';
}

/**
 * What stops QKMS from serving at all on this token, one line per missing need naming the mechanism
 * and the KMS operations it blocks (empty when the core is there). `wrap` is QKMS_DATA_KEY_WRAP when set.
 */
export function coreProblems(caps: TokenCapabilities, wrap?: DataKeyWrapMode): string[] {
  const problems: string[] = [];
  for (const name of ['aes-token-keys', 'hmac-keys', 'hmac-sha256', 'random'] as const) {
    const c = caps.checks[name];
    if (!c.ok) problems.push(`${c.mechanism} (${c.detail}) is required: without it no ${CAPABILITY_FEATURES[name]}`);
  }
  if (!caps.checks['aes-gcm'].ok && !caps.checks['aes-cbc'].ok) {
    problems.push(`CKM_AES_GCM or CKM_AES_CBC_PAD is required for Encrypt, Decrypt and ReEncrypt (${caps.checks['aes-gcm'].detail}; ${caps.checks['aes-cbc'].detail})`);
  }
  const modes = dataKeyWrapModes(caps);
  if (modes.length === 0) problems.push('no data-key construction works (RFC 5649 key wrap, AES-GCM key wrap or AES-CBC): GenerateDataKey* cannot be served');
  else if (wrap && !modes.includes(wrap)) problems.push(`QKMS_DATA_KEY_WRAP=${wrap} needs ${caps.checks[NEEDS[wrap]].mechanism} (${caps.checks[NEEDS[wrap]].detail}); this token can do ${modes.join(', ')}`);
  return problems;
}

const CURVE_CAPABILITY = { 'P-256': 'ec-p256', 'P-384': 'ec-p384', 'P-521': 'ec-p521', secp256k1: 'ec-secp256k1' } as const;
const HMAC_CAPABILITY: Record<Hash, CapabilityName | undefined> = { SHA1: undefined, SHA224: 'hmac-sha224', SHA256: 'hmac-sha256', SHA384: 'hmac-sha384', SHA512: 'hmac-sha512' };

/**
 * Why the token cannot make this key pair for this usage (undefined when it can). Without a usage
 * (a data key pair, which leaves the HSM) only its generation counts.
 */
export function keyPairProblem(caps: TokenCapabilities, spec: KeyPairSpec, usage?: KeyPairUsage): string | undefined {
  const generation: CapabilityName = spec.family === 'RSA' ? 'rsa-keys' : spec.family === 'EDWARDS' ? 'ed25519' : CURVE_CAPABILITY[spec.curve];
  const use: CapabilityName[] =
    usage === undefined || spec.family === 'EDWARDS'
      ? []
      : spec.family === 'RSA'
        ? usage === 'SIGN_VERIFY' ? [] : ['rsa-oaep-sha1']
        : [usage === 'KEY_AGREEMENT' ? 'ecdh' : 'ecdsa'];
  const needs = [generation, ...use];
  if (spec.family === 'RSA' && usage === 'SIGN_VERIFY' && !caps.checks['rsa-pss'].ok && !caps.checks['rsa-pkcs1'].ok) return missing(caps, 'rsa-pss');
  for (const n of needs) if (!caps.checks[n].ok) return missing(caps, n);
  if (spec.family === 'RSA' && caps.rsaBits && (spec.bits < caps.rsaBits.min || spec.bits > caps.rsaBits.max)) {
    return `this HSM generates RSA keys of ${caps.rsaBits.min}–${caps.rsaBits.max} bits only (CKM_RSA_PKCS_KEY_PAIR_GEN)`;
  }
  return undefined;
}

/** Why the token cannot make or use an HMAC key with this hash (undefined when it can). */
export function hmacProblem(caps: TokenCapabilities, hash: Hash): string | undefined {
  const name = HMAC_CAPABILITY[hash];
  if (!name) return `HMAC with ${hash} is not offered`;
  if (!caps.checks['hmac-keys'].ok) return missing(caps, 'hmac-keys');
  return caps.checks[name].ok ? undefined : missing(caps, name);
}

/** How RSAES_OAEP_SHA_256 is done on this token, in a line for operators (start-up log, qkms token capabilities). */
export function rsaOaepSha256Note(caps: TokenCapabilities): string {
  const check = caps.checks['rsa-oaep-sha256'];
  if (caps.rsaOaepSha256 === 'native') return `RSAES_OAEP_SHA_256 by the HSM (${check.mechanism} with SHA-256)`;
  if (caps.rsaOaepSha256 === 'raw-rsa') {
    return (
      `RSAES_OAEP_SHA_256 as raw RSA with the private key in the HSM (${check.mechanism}) and the OAEP padding checked in QKMS, ` +
      'since the HSM\'s OAEP lacks SHA-256; RSA ENCRYPT_DECRYPT keys made before QKMS did this refuse it (UnsupportedOperationException)'
    );
  }
  return `RSAES_OAEP_SHA_256 is not available (${check.mechanism} ${check.detail})`;
}

/**
 * Why this RSA key cannot do RSAES-OAEP with SHA-256 on this token although the token can (undefined
 * when it can), from what the token says about its private key object (Hsm.inspectKeyObjects):
 * with raw RSA, the private key must allow the raw mechanism, which keys made before QKMS did
 * OAEP-SHA-256 this way do not (their CKA_ALLOWED_MECHANISMS is fixed: CKA_MODIFIABLE false).
 */
export function rsaOaepKeyProblem(caps: TokenCapabilities, privateKey: KeyObjectFacts): string | undefined {
  if (caps.rsaOaepSha256 !== 'raw-rsa') return undefined;
  const raw = caps.checks['rsa-oaep-sha256'].mechanism;
  if (privateKey.allowedMechanisms === null || privateKey.allowedMechanisms.includes(raw)) return undefined;
  return (
    `this HSM does OAEP with SHA-256 as raw RSA (${raw}) with the padding checked in QKMS, and this key's ` +
    `private key allows only ${privateKey.allowedMechanisms.join(', ')}: it was made before QKMS did so; ` +
    'use RSAES_OAEP_SHA_1 with it, or a new key'
  );
}

/** Why the token cannot do this capability, for an UnsupportedOperationException (undefined when it can). */
export function capabilityProblem(caps: TokenCapabilities, name: CapabilityName): string | undefined {
  return caps.checks[name].ok ? undefined : missing(caps, name);
}

function missing(caps: TokenCapabilities, name: CapabilityName): string {
  const c = caps.checks[name];
  return `this HSM cannot do it: ${c.mechanism} ${c.detail}`;
}
