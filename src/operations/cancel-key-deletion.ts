import type { KeyRecord } from '../domain/key-repository';
import { DELETION_STATES } from '../domain/key-state';
import { KMSInvalidStateException } from '../errors/kms-errors';
import type { Operation, OperationContext } from './context';
import { Joi, keyIdSchema } from './shared-schemas';
import { transitionKey } from './transition-key';
import { useKey } from './use-key';

const schema = Joi.object({ KeyId: keyIdSchema.required() });

/** Disabled, or PendingImport for an imported key whose material is not all there (it could not be enabled). */
async function stateAfterCancel(ctx: OperationContext, key: KeyRecord): Promise<'Disabled' | 'PendingImport'> {
  if (key.origin !== 'EXTERNAL') return 'Disabled';
  const materials = await ctx.deps.keys.listMaterialsOf(key.keyId);
  return materials.length > 0 && materials.every((m) => m.imported?.importState === 'IMPORTED') ? 'Disabled' : 'PendingImport';
}

/**
 * PendingDeletion or PendingReplicaDeletion -> Disabled (PendingImport for an imported key without its material), not the state before (kms-protocol.md §5); any other state is S4.
 * Compare-and-set against the scheduler: once it has claimed the key (its waiting period over),
 * a cancel is refused rather than answered 200 for a key that is being destroyed.
 */
export const cancelKeyDeletion: Operation<{ KeyId: string }> = {
  schema,
  async handle(input, ctx) {
    const resolved = await useKey(ctx, input.KeyId, { allowAlias: false, action: 'kms:CancelKeyDeletion' });
    const check = (key: KeyRecord) => {
      if (!DELETION_STATES.includes(key.state)) throw KMSInvalidStateException.notPendingDeletion(resolved.arn);
      if (key.deletionStartedAt) throw KMSInvalidStateException.deletionUnderWay(resolved.arn);
    };
    await transitionKey(ctx, resolved, DELETION_STATES, check, { state: await stateAfterCancel(ctx, resolved.key), deletionDate: null, pendingWindowDays: null });
    return { KeyId: resolved.arn };
  },
};
