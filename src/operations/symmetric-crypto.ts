import type { ParsedBlob } from '../domain/ciphertext-blob';
import type { KeyMaterial, KeyRecord } from '../domain/key-repository';
import { assertSymmetricEncryptionKey } from '../domain/key-spec';
import { assertUsableForCrypto } from '../domain/key-state';
import { IncorrectKeyException, InvalidCiphertextException, InvalidKeyUsageException, NotFoundException, UnsupportedOperationException } from '../errors/kms-errors';
import type { RequestFacts } from './authorize';
import type { OperationContext } from './context';
import { currentMaterial, resolveKey } from './key-lookup';

/** A key checked for one cryptographic operation, with the material version to use. */
export interface UsableKey {
  key: KeyRecord;
  arn: string;
  material: KeyMaterial;
}

/**
 * Encrypt, GenerateDataKey*, ReEncrypt's destination: the key named by KeyId (aliases allowed),
 * Enabled, symmetric ENCRYPT_DECRYPT, and its current material.
 */
export async function keyForEncryption(
  keyId: string,
  ctx: OperationContext,
  options: { operation: string; action: string; algorithm?: string; facts?: RequestFacts },
): Promise<UsableKey> {
  const resolved = await resolveKey(keyId, ctx, { allowAlias: true, action: options.action, facts: options.facts });
  assertUsableForCrypto(resolved.key.state, resolved.arn);
  return checkForEncryption(resolved, ctx, options);
}

/** keyForEncryption's checks on a key already resolved, authorized and usable (Encrypt resolves first to pick RSA or AES). */
export async function checkForEncryption(
  resolved: { key: KeyRecord; arn: string },
  ctx: OperationContext,
  options: { operation: string; algorithm?: string },
): Promise<UsableKey> {
  const { key, arn } = resolved;
  assertSymmetricEncryptionKey(key, arn, options.operation);
  assertSymmetricAlgorithm(options.algorithm, key);
  return { key, arn, material: await currentMaterial(ctx, key) };
}

/**
 * Decrypt and ReEncrypt's source: the key the blob names. A KeyId in the request must name that
 * same key (IncorrectKeyException); without one, a blob whose key is unknown here is not ours
 * (InvalidCiphertextException), and so is a blob naming a material version the key never had.
 */
export async function keyForDecryption(
  blob: ParsedBlob,
  ctx: OperationContext,
  options: { operation: string; action: string; keyId?: string; algorithm?: string; facts?: RequestFacts },
): Promise<UsableKey> {
  const access = { action: options.action, facts: options.facts };
  // With a KeyId, the named key is resolved and authorized once and must be the blob's; without,
  // the blob's key is, and only "no such key" means the blob is not ours (a denial or an outage
  // surfaces as such).
  const { key, arn } =
    options.keyId !== undefined
      ? await resolveKey(options.keyId, ctx, { allowAlias: true, ...access })
      : await resolveKey(blob.keyId, ctx, { allowAlias: false, ...access }).catch((err: unknown) => {
          throw err instanceof NotFoundException ? new InvalidCiphertextException('', { cause: err }) : err;
        });
  if (key.keyId !== blob.keyId) throw IncorrectKeyException.create();
  assertUsableForCrypto(key.state, arn);
  assertSymmetricEncryptionKey(key, arn, options.operation);
  assertSymmetricAlgorithm(options.algorithm, key);
  const material = await ctx.deps.keys.getMaterial(key.keyId, blob.materialVersion);
  if (!material) throw new InvalidCiphertextException();
  return { key, arn, material };
}

function assertSymmetricAlgorithm(algorithm: string | undefined, key: KeyRecord): void {
  if (algorithm !== undefined && algorithm !== 'SYMMETRIC_DEFAULT') {
    throw new InvalidKeyUsageException(`Algorithm ${algorithm} is incompatible with key spec ${key.keySpec}.`);
  }
}

export function rejectRecipient(recipient: object | undefined): void {
  if (recipient) throw new UnsupportedOperationException('Recipient (Nitro Enclaves attestation) is not supported by this gateway.');
}
