import { aliasArn, keyArn } from '../domain/arn';
import type { BlobHeader } from '../domain/ciphertext-blob';
import { grantOfToken } from '../domain/grant-token';
import type { KeyMaterial, KeyRecord } from '../domain/key-repository';
import { parseKeyRef } from '../domain/key-ref';
import { assertUsageAndAlgorithm, type KeySpec, type KeyUsage } from '../domain/key-spec';
import { assertNotPendingDeletion, assertUsableForCrypto } from '../domain/key-state';
import { signingAlgorithmProblem } from '../domain/token-support';
import {
  IncorrectKeyException,
  InvalidArnException,
  InvalidCiphertextException,
  InvalidKeyUsageException,
  KMSInvalidStateException,
  NotFoundException,
  UnsupportedOperationException,
} from '../errors/kms-errors';
import { authorize, type RequestFacts } from './authorize';
import type { OperationContext } from './context';

export interface ResolvedKey {
  key: KeyRecord;
  arn: string;
}

/** A key checked for a cryptographic operation, with the material version to use. */
export interface UsableKey extends ResolvedKey {
  material: KeyMaterial;
}

/** The key states an operation accepts (kms-protocol.md §5), by name. */
const STATE_CHECKS = {
  usableForCrypto: assertUsableForCrypto,
  notPendingDeletion: assertNotPendingDeletion,
};

/**
 * What the operation does with the key, InvalidKeyUsageException otherwise (kms-protocol.md §10):
 * the key's usage, its spec where the operation takes one spec only (Encrypt, GenerateDataKey*,
 * Decrypt: SYMMETRIC_DEFAULT), and the algorithm, which must be one of the spec's. An algorithm
 * the key allows but the token cannot do is UnsupportedOperationException.
 */
export interface KeyPurpose {
  operation: string;
  usage: KeyUsage;
  keySpec?: KeySpec;
  algorithm?: string;
}

/** The purpose of Encrypt, Decrypt, ReEncrypt and GenerateDataKey*: symmetric ENCRYPT_DECRYPT keys only. */
export const SYMMETRIC_ENCRYPTION = { usage: 'ENCRYPT_DECRYPT', keySpec: 'SYMMETRIC_DEFAULT' } as const;

/** What an operation needs of the key it names; useKey checks it in AWS's order. */
export interface KeyUse {
  /** The action authorized on the key, e.g. 'kms:Encrypt'. */
  action: string;
  /** Whether KeyId may be an alias name or alias ARN ("Key Aliases are not supported" otherwise). */
  allowAlias: boolean;
  /** What policy conditions and grant constraints may test. */
  facts?: RequestFacts;
  /** The states accepted; every state when omitted. */
  state?: keyof typeof STATE_CHECKS;
  purpose?: KeyPurpose;
  /** Returns the key's current material too (every cryptographic operation but Decrypt). */
  material?: 'current';
  /**
   * Decrypt and ReEncrypt's source: the key and material version a ciphertext names. Without a
   * KeyId that key is used, and one unknown here means the ciphertext is not ours
   * (InvalidCiphertextException); with a KeyId, it must name that same key
   * (IncorrectKeyException). The material returned is the ciphertext's version, and a version the
   * key never had is InvalidCiphertextException.
   */
  ciphertext?: CiphertextKey;
}

type CiphertextKey = Pick<BlobHeader, 'keyId' | 'materialVersion'>;

/**
 * The one way an operation gets at a key (kms-protocol.md §4, §5, §10), checked in AWS's order:
 * KeyId -> key record (NotFoundException, InvalidArnException) -> `action` authorized
 * (AccessDeniedException) -> the ciphertext's key (IncorrectKeyException) -> state -> purpose
 * -> material.
 */
export function useKey(ctx: OperationContext, keyId: string | undefined, use: KeyUse & { ciphertext: CiphertextKey }): Promise<UsableKey>;
export function useKey(ctx: OperationContext, keyId: string, use: KeyUse & { material: 'current' }): Promise<UsableKey>;
export function useKey(ctx: OperationContext, keyId: string, use: KeyUse): Promise<ResolvedKey>;
export async function useKey(ctx: OperationContext, keyId: string | undefined, use: KeyUse): Promise<ResolvedKey | UsableKey> {
  const resolved = await findKey(ctx, keyId, use);
  const { key, arn } = resolved;
  ctx.noteKey(arn);
  await authorize(ctx, use.action, key, use.facts);
  if (use.ciphertext && key.keyId !== use.ciphertext.keyId) throw IncorrectKeyException.create();
  if (use.state) STATE_CHECKS[use.state](key.state, arn);
  if (use.purpose) assertKeyPurpose(ctx, resolved, use.purpose);
  if (use.ciphertext) return { key, arn, material: await ciphertextMaterial(ctx, key, use.ciphertext.materialVersion) };
  return use.material === 'current' ? { key, arn, material: await currentMaterial(ctx, key) } : resolved;
}

/** useKey's purpose check, for Encrypt, which learns the purpose from the key (RSA or symmetric). */
export function assertKeyPurpose(ctx: OperationContext, { key, arn }: ResolvedKey, purpose: KeyPurpose): void {
  const { operation, usage, keySpec, algorithm } = purpose;
  if (key.keyUsage !== usage) throw InvalidKeyUsageException.forOperation(arn, key.keyUsage, operation);
  // The message names the spec when the usage fits but the key is of another kind.
  if (keySpec !== undefined && key.keySpec !== keySpec) throw InvalidKeyUsageException.forKeySpec(arn, key.keySpec, operation);
  if (algorithm === undefined) return;
  assertUsageAndAlgorithm(key, arn, operation, usage, algorithm);
  const problem = signingAlgorithmProblem(ctx.deps.hsm.capabilities(), algorithm);
  if (problem) throw new UnsupportedOperationException(`${algorithm}: ${problem}.`);
}

/** The key's current material version, with its token objects. */
export async function currentMaterial(ctx: OperationContext, key: KeyRecord): Promise<KeyMaterial> {
  const found = await ctx.deps.keys.getMaterial(key.keyId, key.currentMaterialVersion);
  if (!found) throw new Error(`metadata of ${key.keyId} lacks material version ${key.currentMaterialVersion}`);
  return inPlace(ctx, key, found);
}

/**
 * Imported material past its ValidTo is expired from that moment, though the scheduler deletes
 * it at its next run: until then a request is answered as after the deletion (pending import).
 */
function inPlace(ctx: OperationContext, key: KeyRecord, material: KeyMaterial): KeyMaterial {
  const validTo = material.imported?.validTo;
  if (material.imported?.importState === 'PENDING_IMPORT' || (validTo && validTo.getTime() <= ctx.deps.clock().getTime())) {
    throw KMSInvalidStateException.pendingImport(keyArn(ctx.deps.scope, key.keyId));
  }
  return material;
}

/**
 * Every token in GrantTokens must be a token of an existing grant (InvalidGrantTokenException).
 * Grants take effect at once here, so a valid token adds nothing beyond the grant itself. Checked
 * by each operation where AWS checks it, which is not always just before the key.
 */
export async function checkGrantTokens(tokens: string[] | undefined, ctx: OperationContext): Promise<void> {
  for (const token of tokens ?? []) await grantOfToken(token, (grantId) => ctx.deps.keys.grantTokenHashes(grantId));
}

/** The key KeyId names or, without one, the key the ciphertext names. */
async function findKey(ctx: OperationContext, keyId: string | undefined, use: KeyUse): Promise<ResolvedKey> {
  if (keyId !== undefined) return lookUpKey(ctx, keyId, use.allowAlias);
  if (!use.ciphertext) throw new Error('useKey needs a KeyId or a ciphertext');
  // Only "no such key" means the ciphertext is not ours; a denial or an outage surfaces as such.
  return lookUpKey(ctx, use.ciphertext.keyId, false).catch((err: unknown) => {
    throw err instanceof NotFoundException ? new InvalidCiphertextException('', { cause: err }) : err;
  });
}

/** KeyId -> key record: key id, key ARN of either form, alias name or alias ARN; AWS's order and wording. */
async function lookUpKey(ctx: OperationContext, input: string, allowAlias: boolean): Promise<ResolvedKey> {
  const { scope, keys } = ctx.deps;
  const ref = parseKeyRef(input);
  if (ref.kind === 'invalid') throw NotFoundException.invalidKeyId(input);
  if (ref.kind === 'keyArn' || ref.kind === 'aliasArn') {
    if (ref.region !== undefined && ref.region !== scope.region) throw NotFoundException.invalidArnRegion(ref.region);
    // One gateway serves one account; another account's ARN names nothing here [U, §4].
    if (ref.account !== scope.accountId) throw NotFoundException.invalidKeyId(input);
  }
  let keyId: string;
  if (ref.kind === 'aliasName' || ref.kind === 'aliasArn') {
    if (!allowAlias) throw new InvalidArnException('Key Aliases are not supported for this operation.');
    const target = await keys.aliasTarget(ref.aliasName);
    if (!target) throw NotFoundException.aliasNotFound(aliasArn(scope, ref.aliasName));
    keyId = target;
  } else {
    keyId = ref.keyId;
  }
  const arn = keyArn(scope, keyId);
  const key = await keys.getKey(keyId);
  if (!key) throw NotFoundException.keyDoesNotExist(arn);
  return { key, arn };
}

async function ciphertextMaterial(ctx: OperationContext, key: KeyRecord, version: number): Promise<KeyMaterial> {
  const material = await ctx.deps.keys.getMaterial(key.keyId, version);
  if (!material) throw new InvalidCiphertextException();
  return inPlace(ctx, key, material);
}
