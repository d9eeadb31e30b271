import { InvalidKeyUsageException } from '../errors/kms-errors';

/** KeySpec x KeyUsage -> algorithm lists reported in KeyMetadata (kms-protocol.md §6), as data. */
export type KeyUsage = 'ENCRYPT_DECRYPT' | 'SIGN_VERIFY' | 'GENERATE_VERIFY_MAC' | 'KEY_AGREEMENT';
export type KeySpec = 'SYMMETRIC_DEFAULT';

export const KEY_SPECS_IN_KMS = [
  'RSA_2048', 'RSA_3072', 'RSA_4096', 'ECC_NIST_P256', 'ECC_NIST_P384', 'ECC_NIST_P521', 'ECC_SECG_P256K1',
  'SYMMETRIC_DEFAULT', 'HMAC_224', 'HMAC_256', 'HMAC_384', 'HMAC_512', 'SM2', 'ECC_NIST_EDWARDS25519',
  'ML_DSA_44', 'ML_DSA_65', 'ML_DSA_87',
] as const;
export const KEY_USAGES_IN_KMS = ['SIGN_VERIFY', 'ENCRYPT_DECRYPT', 'GENERATE_VERIFY_MAC', 'KEY_AGREEMENT'] as const;

/** Specs this gateway can create today; the asymmetric/HMAC issue extends this table. */
export const SUPPORTED_SPECS: Record<string, { usages: KeyUsage[]; algorithms: Partial<Record<'EncryptionAlgorithms', string[]>> }> = {
  SYMMETRIC_DEFAULT: { usages: ['ENCRYPT_DECRYPT'], algorithms: { EncryptionAlgorithms: ['SYMMETRIC_DEFAULT'] } },
};

/** AES_128 / AES_256 -> bytes (GenerateDataKey KeySpec). */
export const DATA_KEY_SPEC_BYTES: Record<string, number> = { AES_128: 16, AES_256: 32 };

/**
 * GenerateDataKey, Encrypt, Decrypt, ReEncrypt: symmetric ENCRYPT_DECRYPT keys only. The message
 * names the usage when it is wrong, the spec when the usage fits but the key is asymmetric.
 */
export function assertSymmetricEncryptionKey(key: { keyUsage: string; keySpec: string }, keyArn: string, operation: string): void {
  if (key.keyUsage !== 'ENCRYPT_DECRYPT') throw InvalidKeyUsageException.forOperation(keyArn, key.keyUsage, operation);
  if (key.keySpec !== 'SYMMETRIC_DEFAULT') throw InvalidKeyUsageException.forKeySpec(keyArn, key.keySpec, operation);
}
