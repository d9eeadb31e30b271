import { capabilityProblem, hmacProblem, keyPairProblem, type TokenCapabilities } from '../hsm/capabilities';
import { keyPairSpecOf, SUPPORTED_SPECS, type KeySpec, type KeyUsage } from './key-spec';

/**
 * KMS key specs and algorithms against what the token can do (capability discovery): why a key
 * cannot be made or an algorithm used on this token, for an UnsupportedOperationException naming
 * the missing mechanism; undefined when it can.
 */
export function keySpecProblem(caps: TokenCapabilities, keySpec: KeySpec, keyUsage: KeyUsage): string | undefined {
  const material = SUPPORTED_SPECS[keySpec].material;
  if (material.family === 'SYMMETRIC') return capabilityProblem(caps, 'aes-token-keys');
  if (material.family === 'HMAC') return hmacProblem(caps, material.hash);
  return keyPairProblem(caps, keyPairSpecOf(keySpec)!, keyUsage === 'SIGN_VERIFY' || keyUsage === 'KEY_AGREEMENT' ? keyUsage : 'ENCRYPT_DECRYPT');
}

/** Signing algorithms whose mechanism a token may lack although it makes the key. */
export function signingAlgorithmProblem(caps: TokenCapabilities, algorithm: string): string | undefined {
  if (algorithm.startsWith('RSASSA_PSS_')) return capabilityProblem(caps, 'rsa-pss');
  if (algorithm.startsWith('RSASSA_PKCS1_V1_5_')) return capabilityProblem(caps, 'rsa-pkcs1');
  return undefined;
}
