import crypto from 'node:crypto';
import type { MaterialObjects } from '../domain/key-repository';
import { assertUsageAndAlgorithm, HASH_BYTES, signingScheme, type KeySpec, type KeyUsage } from '../domain/key-spec';
import { assertUsableForCrypto } from '../domain/key-state';
import type { Hash, SigningScheme } from '../hsm/hsm';
import { UnsupportedOperationException, ValidationException } from '../errors/kms-errors';
import { signingAlgorithmProblem } from '../domain/token-support';
import type { OperationContext } from './context';
import { checkGrantTokens, currentMaterial, resolveKey } from './key-lookup';

/** A key checked for Sign, Verify, GenerateMac or VerifyMac, with its current material's token objects. */
export interface KeyInUse {
  arn: string;
  keySpec: KeySpec;
  objects: MaterialObjects;
}

/**
 * The key named by KeyId (aliases allowed), authorized for `action`, Enabled, of `usage`, and able
 * to use `algorithm` (InvalidKeyUsageException otherwise, kms-protocol.md §10 Signing and MAC).
 */
export async function keyForUse(
  input: { KeyId: string; GrantTokens?: string[] },
  ctx: OperationContext,
  options: { operation: string; action: string; usage: KeyUsage; algorithm: string },
): Promise<KeyInUse> {
  await checkGrantTokens(input.GrantTokens, ctx);
  const { key, arn } = await resolveKey(input.KeyId, ctx, { allowAlias: true, action: options.action });
  assertUsableForCrypto(key.state, arn);
  assertUsageAndAlgorithm(key, arn, options.operation, options.usage, options.algorithm);
  const problem = signingAlgorithmProblem(ctx.deps.hsm.capabilities(), options.algorithm);
  if (problem) throw new UnsupportedOperationException(`${options.algorithm}: ${problem}.`);
  return { arn, keySpec: key.keySpec, objects: (await currentMaterial(ctx, key)).objects };
}

/**
 * Sign and Verify work on a digest: RAW messages (≤ 4096 bytes) are hashed here with the
 * algorithm's hash — the message is what the caller sends, not a secret — and DIGEST messages must
 * be exactly the hash's length [O].
 */
export function signingInput(algorithm: string, message: Buffer, messageType = 'RAW'): { scheme: SigningScheme; digest: Buffer } {
  if (messageType === 'EXTERNAL_MU') throw new ValidationException(`MessageType EXTERNAL_MU is valid only with ML_DSA_SHAKE_256, not ${algorithm}.`);
  if (algorithm === 'ED25519_PH_SHA_512') throw new UnsupportedOperationException('ED25519_PH_SHA_512 (prehashed Ed25519) is not supported by this gateway; use ED25519_SHA_512.');
  const scheme = signingScheme(algorithm);
  if (scheme.scheme === 'EDDSA') {
    // Pure Ed25519 signs the message itself, so it needs the message [D: ED25519_SHA_512 requires RAW].
    if (messageType !== 'RAW') throw new ValidationException(`${algorithm} requires MessageType RAW.`);
    return { scheme, digest: message };
  }
  if (messageType === 'DIGEST') {
    if (message.length !== HASH_BYTES[scheme.hash]) throw new ValidationException(`Digest is invalid length for algorithm ${algorithm}.`);
    return { scheme, digest: message };
  }
  return { scheme, digest: crypto.createHash(scheme.hash.toLowerCase()).update(message).digest() };
}

/** HMAC_SHA_256 -> SHA256. */
export function macHash(algorithm: string): Hash {
  return algorithm.replace(/^HMAC_SHA_/, 'SHA') as Hash;
}
