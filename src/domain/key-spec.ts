import { InvalidKeyUsageException } from '../errors/kms-errors';
import type { Hash, HmacKeySpec, KeyPairSpec, SigningScheme } from '../hsm/hsm';

/** KeySpec x KeyUsage -> algorithm lists reported in KeyMetadata (kms-protocol.md §6), as data. */
export type KeyUsage = 'ENCRYPT_DECRYPT' | 'SIGN_VERIFY' | 'GENERATE_VERIFY_MAC' | 'KEY_AGREEMENT';
export type KeySpec =
  | 'SYMMETRIC_DEFAULT'
  | 'RSA_2048' | 'RSA_3072' | 'RSA_4096'
  | 'ECC_NIST_P256' | 'ECC_NIST_P384' | 'ECC_NIST_P521' | 'ECC_SECG_P256K1' | 'ECC_NIST_EDWARDS25519'
  | 'HMAC_224' | 'HMAC_256' | 'HMAC_384' | 'HMAC_512';

export const KEY_SPECS_IN_KMS = [
  'RSA_2048', 'RSA_3072', 'RSA_4096', 'ECC_NIST_P256', 'ECC_NIST_P384', 'ECC_NIST_P521', 'ECC_SECG_P256K1',
  'SYMMETRIC_DEFAULT', 'HMAC_224', 'HMAC_256', 'HMAC_384', 'HMAC_512', 'SM2', 'ECC_NIST_EDWARDS25519',
  'ML_DSA_44', 'ML_DSA_65', 'ML_DSA_87',
] as const;
export const KEY_USAGES_IN_KMS = ['SIGN_VERIFY', 'ENCRYPT_DECRYPT', 'GENERATE_VERIFY_MAC', 'KEY_AGREEMENT'] as const;

type AlgorithmList = 'EncryptionAlgorithms' | 'SigningAlgorithms' | 'MacAlgorithms' | 'KeyAgreementAlgorithms';

/** What a spec is made of in the HSM. */
type KeyMaterialKind = { family: 'SYMMETRIC' } | KeyPairSpec | ({ family: 'HMAC' } & HmacKeySpec);

interface SpecInfo {
  material: KeyMaterialKind;
  /** Each usage the spec allows, with the one algorithm list KeyMetadata reports for it. */
  usages: Partial<Record<KeyUsage, { list: AlgorithmList; algorithms: string[] }>>;
}

const RSA_SIGNING = ['RSASSA_PSS_SHA_256', 'RSASSA_PSS_SHA_384', 'RSASSA_PSS_SHA_512', 'RSASSA_PKCS1_V1_5_SHA_256', 'RSASSA_PKCS1_V1_5_SHA_384', 'RSASSA_PKCS1_V1_5_SHA_512'];
const RSA_ENCRYPTION = ['RSAES_OAEP_SHA_1', 'RSAES_OAEP_SHA_256'];
const rsa = (bits: 2048 | 3072 | 4096): SpecInfo => ({
  material: { family: 'RSA', bits },
  usages: { SIGN_VERIFY: { list: 'SigningAlgorithms', algorithms: RSA_SIGNING }, ENCRYPT_DECRYPT: { list: 'EncryptionAlgorithms', algorithms: RSA_ENCRYPTION } },
});
const ec = (curve: 'P-256' | 'P-384' | 'P-521' | 'secp256k1', algorithm: string): SpecInfo => ({
  material: { family: 'EC', curve },
  usages: {
    SIGN_VERIFY: { list: 'SigningAlgorithms', algorithms: [algorithm] },
    // KEY_AGREEMENT (ECDH) is offered on the NIST curves only (kms-protocol.md §6).
    ...(curve !== 'secp256k1' && { KEY_AGREEMENT: { list: 'KeyAgreementAlgorithms' as const, algorithms: ['ECDH'] } }),
  },
});
const hmac = (hash: Hash, bytes: number, algorithm: string): SpecInfo => ({
  material: { family: 'HMAC', hash, bytes },
  usages: { GENERATE_VERIFY_MAC: { list: 'MacAlgorithms', algorithms: [algorithm] } },
});

/** The specs this gateway creates. KEY_AGREEMENT, SM2 and ML-DSA answer UnsupportedOperationException. */
export const SUPPORTED_SPECS: Readonly<Record<KeySpec, SpecInfo>> = {
  SYMMETRIC_DEFAULT: { material: { family: 'SYMMETRIC' }, usages: { ENCRYPT_DECRYPT: { list: 'EncryptionAlgorithms', algorithms: ['SYMMETRIC_DEFAULT'] } } },
  RSA_2048: rsa(2048),
  RSA_3072: rsa(3072),
  RSA_4096: rsa(4096),
  ECC_NIST_P256: ec('P-256', 'ECDSA_SHA_256'),
  ECC_NIST_P384: ec('P-384', 'ECDSA_SHA_384'),
  ECC_NIST_P521: ec('P-521', 'ECDSA_SHA_512'),
  ECC_SECG_P256K1: ec('secp256k1', 'ECDSA_SHA_256'),
  // The two algorithms AWS documents [D; exact list U]; ED25519_PH_SHA_512 is refused at Sign (sign.ts signingInput).
  ECC_NIST_EDWARDS25519: {
    material: { family: 'EDWARDS', curve: 'Ed25519' },
    usages: { SIGN_VERIFY: { list: 'SigningAlgorithms', algorithms: ['ED25519_SHA_512', 'ED25519_PH_SHA_512'] } },
  },
  // AWS HMAC keys are as long as the hash output [D: "HMAC_256 ... 256-bit key"].
  HMAC_224: hmac('SHA224', 28, 'HMAC_SHA_224'),
  HMAC_256: hmac('SHA256', 32, 'HMAC_SHA_256'),
  HMAC_384: hmac('SHA384', 48, 'HMAC_SHA_384'),
  HMAC_512: hmac('SHA512', 64, 'HMAC_SHA_512'),
};

export function isSupportedSpec(spec: string): spec is KeySpec {
  return Object.hasOwn(SUPPORTED_SPECS, spec);
}

/** The key-pair shape of an asymmetric spec (RSA, EC, Edwards); undefined for symmetric and HMAC specs. */
export function keyPairSpecOf(spec: KeySpec): KeyPairSpec | undefined {
  const material = SUPPORTED_SPECS[spec].material;
  return material.family === 'SYMMETRIC' || material.family === 'HMAC' ? undefined : material;
}

/** The algorithm list KeyMetadata and GetPublicKey report for a key, e.g. { SigningAlgorithms: [...] }. */
export function algorithmsOf(key: { keySpec: KeySpec; keyUsage: KeyUsage }): Partial<Record<AlgorithmList, string[]>> {
  const usage = SUPPORTED_SPECS[key.keySpec].usages[key.keyUsage];
  return usage ? { [usage.list]: usage.algorithms } : {};
}

/** A KMS signing algorithm as the HSM layer names it. */
export function signingScheme(algorithm: string): SigningScheme {
  if (algorithm === 'ED25519_SHA_512') return { scheme: 'EDDSA', hash: 'SHA512' };
  const m = /^(RSASSA_PSS|RSASSA_PKCS1_V1_5|ECDSA)_SHA_(256|384|512)$/.exec(algorithm);
  if (!m) throw new Error(`not a signing algorithm this gateway implements: ${algorithm}`);
  const scheme = m[1] === 'RSASSA_PSS' ? 'RSA_PSS' : m[1] === 'ECDSA' ? 'ECDSA' : 'RSA_PKCS1';
  return { scheme, hash: `SHA${m[2]}` as SigningScheme['hash'] };
}

/** Digest length in bytes (MessageType DIGEST must be exactly this long). */
export const HASH_BYTES: Record<Hash, number> = { SHA1: 20, SHA224: 28, SHA256: 32, SHA384: 48, SHA512: 64 };

/** AES_128 / AES_256 -> bytes (GenerateDataKey KeySpec). */
export const DATA_KEY_SPEC_BYTES: Record<string, number> = { AES_128: 16, AES_256: 32 };

/** Sign/Verify, GenerateMac/VerifyMac: the key's usage must be `usage`, and the algorithm one of its spec's. */
export function assertUsageAndAlgorithm(key: { keyUsage: KeyUsage; keySpec: KeySpec }, keyArn: string, operation: string, usage: KeyUsage, algorithm: string): void {
  if (key.keyUsage !== usage) throw InvalidKeyUsageException.forOperation(keyArn, key.keyUsage, operation);
  const allowed = SUPPORTED_SPECS[key.keySpec].usages[usage]?.algorithms ?? [];
  // AWS's wording, as recorded for GenerateMac and VerifyMac (and used for Sign and Verify alike).
  if (!allowed.includes(algorithm)) throw new InvalidKeyUsageException(`Algorithm ${algorithm} is incompatible with key spec ${key.keySpec}.`);
}
