import { assertUsableForCrypto } from '../domain/key-state';
import { ConflictException, KMSInvalidStateException, NotFoundException, UnsupportedOperationException } from '../errors/kms-errors';
import type { OperationContext } from './context';
import { useKey, type ResolvedKey } from './use-key';

/**
 * The key checks the rotation operations share (kms-protocol.md §10 "Rotation"): EnableKeyRotation,
 * DisableKeyRotation, GetKeyRotationStatus, RotateKeyOnDemand and ListKeyRotations, each in a file
 * of its own.
 */

/**
 * Rotation applies to symmetric keys only (U7); automatic rotation to generated material only
 * (U6 for imported: EXTERNAL keys rotate on demand, to material imported for it, and list it).
 */
export async function rotatableKey(keyId: string, ctx: OperationContext, action: string, { allowImported = false } = {}): Promise<ResolvedKey> {
  const resolved = await useKey(ctx, keyId, { allowAlias: false, action });
  if (resolved.key.keySpec !== 'SYMMETRIC_DEFAULT') {
    throw new UnsupportedOperationException(`${resolved.arn} key spec is ${resolved.key.keySpec} which is not valid for key rotation.`);
  }
  if (resolved.key.origin !== 'AWS_KMS' && !allowImported) throw new UnsupportedOperationException(`${resolved.arn} origin is ${resolved.key.origin} which is not valid for this operation.`);
  return resolved;
}

/** Enable/Disable/RotateKeyOnDemand need an Enabled key: Disabled is D1, PendingDeletion S3 (§5). */
async function enabledRotatableKey(keyId: string, ctx: OperationContext, action: string): Promise<ResolvedKey> {
  const resolved = await rotatableKey(keyId, ctx, action);
  assertUsableForCrypto(resolved.key.state, resolved.arn);
  assertNotReplica(ctx, resolved);
  return resolved;
}

/**
 * A multi-Region key's material and automatic rotation are shared by its regions and changed
 * from its primary only, as AWS does (our wording: AWS's message is not recorded).
 */
export function assertNotReplica(ctx: OperationContext, { key, arn }: ResolvedKey): void {
  if (key.primaryRegion !== undefined && key.primaryRegion !== ctx.deps.scope.region) {
    throw new UnsupportedOperationException(`${arn} is a multi-Region replica key: its rotation is managed from its primary key in ${key.primaryRegion}.`);
  }
}

/**
 * The key is read again and its state checked again when a conditional write finds it changed
 * (disabled or scheduled for deletion since it was read): the answer is the state's error.
 */
export async function refusedBecauseOfState(ctx: OperationContext, resolved: ResolvedKey): Promise<never> {
  const key = await ctx.deps.keys.getKey(resolved.key.keyId);
  if (!key) throw NotFoundException.keyDoesNotExist(resolved.arn);
  assertUsableForCrypto(key.state, resolved.arn);
  if (key.deletionStartedAt) throw KMSInvalidStateException.pendingDeletion(resolved.arn);
  throw new ConflictException(`The state of ${resolved.arn} changed during the request; try again.`);
}

/** Enable/DisableKeyRotation: the rotation settings change only while the key is still Enabled. */
export function setKeyRotation(action: string, rotation: (ctx: OperationContext, periodDays?: number) => { periodDays: number; nextRotationDate: Date } | null) {
  return async (input: { KeyId: string; RotationPeriodInDays?: number }, ctx: OperationContext): Promise<undefined> => {
    const resolved = await enabledRotatableKey(input.KeyId, ctx, action);
    if (!(await ctx.deps.keys.setRotation(resolved.key.keyId, rotation(ctx, input.RotationPeriodInDays)))) await refusedBecauseOfState(ctx, resolved);
    return undefined;
  };
}

