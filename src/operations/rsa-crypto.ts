import type { EncryptionContext } from '../domain/encryption-context';
import type { KeyRecord } from '../domain/key-repository';
import { capabilityProblem } from '../hsm/capabilities';
import type { ObjectRef } from '../hsm/hsm';
import { assertUsageAndAlgorithm, HASH_BYTES, SUPPORTED_SPECS } from '../domain/key-spec';
import { UnsupportedOperationException, ValidationException } from '../errors/kms-errors';
import type { OperationContext } from './context';
import { currentMaterial } from './use-key';

/** An RSA key of usage ENCRYPT_DECRYPT: Encrypt and Decrypt take the RSAES_OAEP_* path. */
export function isRsaEncryptionKey(key: KeyRecord): boolean {
  return key.keyUsage === 'ENCRYPT_DECRYPT' && SUPPORTED_SPECS[key.keySpec].material.family === 'RSA';
}

/**
 * The OAEP hash for an RSA Encrypt/Decrypt, after the checks in AWS's order: an algorithm of the
 * key (InvalidKeyUsageException; SYMMETRIC_DEFAULT when omitted), no encryption context (asymmetric
 * keys take none [D]), and one the token can do (capability discovery) — SoftHSM2 has OAEP with
 * SHA-1 only, so RSAES_OAEP_SHA_256 is UnsupportedOperationException there rather than a wrong answer.
 */
export async function oaepFor(
  key: KeyRecord,
  arn: string,
  operation: string,
  request: { algorithm?: string; context?: EncryptionContext },
  ctx: OperationContext,
): Promise<{ hash: 'SHA1' | 'SHA256'; privateKey: ObjectRef; publicKey: ObjectRef }> {
  const algorithm = request.algorithm ?? 'SYMMETRIC_DEFAULT';
  assertUsageAndAlgorithm(key, arn, operation, 'ENCRYPT_DECRYPT', algorithm);
  if (request.context && Object.keys(request.context).length > 0) {
    throw new ValidationException('EncryptionContext is not supported with asymmetric KMS keys.');
  }
  const hash = algorithm === 'RSAES_OAEP_SHA_1' ? 'SHA1' : 'SHA256';
  const problem = capabilityProblem(ctx.deps.hsm.capabilities(), hash === 'SHA1' ? 'rsa-oaep-sha1' : 'rsa-oaep-sha256');
  if (problem) throw new UnsupportedOperationException(`${algorithm}: ${problem}.`);
  const { objects } = await currentMaterial(ctx, key);
  return { hash, privateKey: objects.private, publicKey: objects.public };
}

/** (modulus bytes) − 2·hashLen − 2, with AWS's message beyond it [O]. */
export function assertOaepPlaintextFits(key: KeyRecord, algorithm: string, hash: 'SHA1' | 'SHA256', plaintext: Buffer): void {
  const material = SUPPORTED_SPECS[key.keySpec].material;
  const limit = (material.family === 'RSA' ? material.bits / 8 : 0) - 2 * HASH_BYTES[hash] - 2;
  if (plaintext.length > limit) throw new ValidationException(`Algorithm ${algorithm} and key spec ${key.keySpec} cannot encrypt data larger than ${limit} bytes.`);
}
