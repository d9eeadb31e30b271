import { aliasArn, keyArn } from '../domain/arn';
import { grantOfToken } from '../domain/grant-token';
import type { KeyMaterial, KeyRecord, StateChange } from '../domain/key-repository';
import type { KeyState } from '../domain/key-state';
import { parseKeyRef } from '../domain/key-ref';
import { InvalidArnException, KMSInternalException, NotFoundException } from '../errors/kms-errors';
import { authorize, type RequestFacts } from './authorize';
import type { OperationContext } from './context';

export interface ResolvedKey {
  key: KeyRecord;
  arn: string;
}

/**
 * KeyId -> key record (kms-protocol.md §4): key id, key ARN of either form, and — where the
 * operation accepts them — alias name or alias ARN. Errors in AWS's order and wording. Every key
 * an operation touches comes through here, so this is where `action` is authorized.
 */
export async function resolveKey(
  input: string,
  ctx: OperationContext,
  options: { allowAlias: boolean; action: string; facts?: RequestFacts },
): Promise<ResolvedKey> {
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
    if (!options.allowAlias) throw new InvalidArnException('Key Aliases are not supported for this operation.');
    const target = await keys.aliasTarget(ref.aliasName);
    if (!target) throw NotFoundException.aliasNotFound(aliasArn(scope, ref.aliasName));
    keyId = target;
  } else {
    keyId = ref.keyId;
  }
  const arn = keyArn(scope, keyId);
  const key = await keys.getKey(keyId);
  if (!key) throw NotFoundException.keyDoesNotExist(arn);
  ctx.noteKey(arn);
  await authorize(ctx, options.action, key, options.facts);
  return { key, arn };
}

/** How often a state change is decided again when the key moved between the read and the write. */
const TRANSITION_ATTEMPTS = 5;

/**
 * A key state change as compare-and-set (EnableKey, DisableKey, ScheduleKeyDeletion,
 * CancelKeyDeletion): `check` throws the KMS error for a key it may not change (it must refuse
 * every state outside `from`, and a key whose deletion has begun); the store then changes the key
 * only if it is still in one of those states. If another request or the scheduler moved it in
 * between, the key is read again and checked again, so the answer always matches what happened.
 */
export async function transitionKey(
  ctx: OperationContext,
  resolved: ResolvedKey,
  from: readonly KeyState[],
  check: (key: KeyRecord) => void,
  change: StateChange,
): Promise<void> {
  let key = resolved.key;
  for (let attempt = 0; attempt < TRANSITION_ATTEMPTS; attempt++) {
    check(key);
    if (await ctx.deps.keys.transitionState(key.keyId, from, change)) return;
    const current = await ctx.deps.keys.getKey(key.keyId);
    if (!current) throw NotFoundException.keyDoesNotExist(resolved.arn);
    key = current;
  }
  throw KMSInternalException.create(new Error(`the state of ${resolved.arn} kept changing during ${TRANSITION_ATTEMPTS} attempts`));
}

/** The key's current material version, with its token objects. */
export async function currentMaterial(ctx: OperationContext, key: KeyRecord): Promise<KeyMaterial> {
  const found = await ctx.deps.keys.getMaterial(key.keyId, key.currentMaterialVersion);
  if (!found) throw new Error(`metadata of ${key.keyId} lacks material version ${key.currentMaterialVersion}`);
  return found;
}

/**
 * Every token in GrantTokens must be a token of an existing grant (InvalidGrantTokenException).
 * Grants take effect at once here, so a valid token adds nothing beyond the grant itself.
 */
export async function checkGrantTokens(tokens: string[] | undefined, ctx: OperationContext): Promise<void> {
  for (const token of tokens ?? []) await grantOfToken(token, (grantId) => ctx.deps.keys.grantTokenHashes(grantId));
}
