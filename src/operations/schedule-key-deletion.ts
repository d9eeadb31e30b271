import type { KeyRecord } from '../domain/key-repository';
import { assertNotPendingDeletion } from '../domain/key-state';
import { epochSeconds, type Operation, type OperationContext } from './context';
import { Joi, keyIdSchema } from './shared-schemas';
import { transitionKey } from './transition-key';
import { useKey } from './use-key';

interface ScheduleKeyDeletionInput {
  KeyId: string;
  PendingWindowInDays?: number;
}

// The model allows 1-365; the service accepts 7-30 (kms-protocol.md §10). Out of range is a
// ValidationException in the usual constraint wording [U].
const schema = Joi.object({ KeyId: keyIdSchema.required(), PendingWindowInDays: Joi.number().integer().min(7).max(30) });
const DAY_MS = 86_400_000;

/**
 * Moves the key to PendingDeletion with its DeletionDate. The Scheduler deletes it when the date
 * passes (domain/key-lifecycle.ts); CancelKeyDeletion stops that. A multi-Region primary with
 * replicas goes to PendingReplicaDeletion without a date instead: its waiting period begins when
 * the last replica is gone (the scheduler starts it), as AWS does.
 */
export const scheduleKeyDeletion: Operation<ScheduleKeyDeletionInput> = {
  schema,
  async handle(input, ctx) {
    const resolved = await useKey(ctx, input.KeyId, { allowAlias: false, action: 'kms:ScheduleKeyDeletion' });
    const { arn } = resolved;
    const days = input.PendingWindowInDays ?? 30;
    const from = ['Enabled', 'Disabled', 'PendingImport'] as const;
    const check = (key: KeyRecord) => assertNotPendingDeletion(key.state, arn);
    if (await hasReplicas(ctx, resolved.key)) {
      await transitionKey(ctx, resolved, from, check, { state: 'PendingReplicaDeletion', deletionDate: null, pendingWindowDays: days });
      return { KeyId: arn, KeyState: 'PendingReplicaDeletion', PendingWindowInDays: days };
    }
    const deletionDate = new Date(ctx.deps.clock().getTime() + days * DAY_MS);
    await transitionKey(ctx, resolved, from, check, { state: 'PendingDeletion', deletionDate, pendingWindowDays: days });
    return { KeyId: arn, DeletionDate: epochSeconds(deletionDate), KeyState: 'PendingDeletion', PendingWindowInDays: days };
  },
};

/** A multi-Region primary with a replica in another region. */
async function hasReplicas(ctx: OperationContext, key: KeyRecord): Promise<boolean> {
  if (key.primaryRegion !== ctx.deps.scope.region) return false;
  return (await ctx.deps.keys.keyRegions(key.keyId)).some((r) => r.region !== ctx.deps.scope.region);
}
