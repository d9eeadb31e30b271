import type { KeyRecord, StateChange } from '../domain/key-repository';
import type { KeyState } from '../domain/key-state';
import { KMSInternalException, NotFoundException } from '../errors/kms-errors';
import type { OperationContext } from './context';
import type { ResolvedKey } from './use-key';

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
